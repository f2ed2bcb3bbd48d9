"""Check the Bicep templates without a Bicep compiler.

Run through scripts/check-bicep.sh, which installs the parsers. Every .bicep
file under the given directory must parse with both tree-sitter-bicep and
pycep-parser. On pycep's parsed form the script then checks what a compiler
would also reject or what would fail only at deployment time:

- a module path that does not exist, a module parameter the module does not
  declare, or a required module parameter that is not passed;
- a resource type without an API version of the form YYYY-MM-DD[-preview];
- a built-in role definition id that is not in KNOWN_ROLE_IDS;
- an @allowed list that does not contain the parameter's default;
- a parameters file that names an unknown parameter or omits a required one;
- a missing output of main.bicep that docs/deploy.md relies on.

It does not type-check expressions, resolve resource property names against
the Azure schemas, or evaluate conditions; `az bicep build` and
`az deployment group what-if` do that (see infra/README.md).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import tree_sitter
import tree_sitter_bicep
from pycep import BicepParser

# Built-in role definition ids used by the templates, copied from the Azure
# built-in roles reference (learn.microsoft.com, "Azure built-in roles").
KNOWN_ROLE_IDS = {
    "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
    "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
    "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
    "4633458b-17de-408a-b874-0445c86b69e6": "Key Vault Secrets User",
    "b86a8fe4-44ce-4948-aee5-eccb2c155cd7": "Key Vault Secrets Officer",
    "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
}

# Outputs of main.bicep that docs/deploy.md reads after deployment.
REQUIRED_MAIN_OUTPUTS = {
    "apiBaseUrl",
    "outboundIp",
    "identityPrincipalId",
    "functionAppName",
    "keyVaultName",
    "keyVaultUri",
}

API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def syntax_errors(parser: tree_sitter.Parser, source: bytes) -> list[str]:
    """Return the positions of ERROR and MISSING nodes in the tree-sitter parse."""
    errors: list[str] = []
    stack = [parser.parse(source).root_node]
    while stack:
        node = stack.pop()
        if node.is_error or node.is_missing:
            line, column = node.start_point
            kind = "missing token" if node.is_missing else "syntax error"
            errors.append(f"{kind} at line {line + 1}, column {column + 1}")
        elif node.has_error:
            stack.extend(node.children)
    return sorted(errors)


def allowed_values(parameter: dict) -> list | None:
    for decorator in parameter.get("decorators", []):
        if decorator.get("type") == "allowed":
            return decorator.get("argument")
    return None


def guid_literals(value: object) -> list[str]:
    """Return every string in a parsed value that looks like a GUID."""
    found: list[str] = []
    if isinstance(value, str) and GUID.match(value):
        found.append(value)
    elif isinstance(value, dict):
        for item in value.values():
            found.extend(guid_literals(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(guid_literals(item))
    return found


def module_config(module: dict) -> dict:
    """Return a module's name/params block; conditional modules nest it once more."""
    config = module.get("config", {})
    if "condition" in config:
        config = config.get("config", {})
    return config


def check_file(path: Path, parsed: dict, parsed_by_path: dict[Path, dict]) -> list[str]:
    problems: list[str] = []

    for name, parameter in parsed.get("parameters", {}).items():
        allowed = allowed_values(parameter)
        default = parameter.get("default")
        if allowed is not None and isinstance(default, (str, int, bool)) and default not in allowed:
            problems.append(f"parameter '{name}': default {default!r} is not in @allowed {allowed}")

    for name, resource in parsed.get("resources", {}).items():
        api_version = resource.get("api_version") or ""
        if not resource.get("type") or not API_VERSION.match(api_version):
            problems.append(f"resource '{name}': type '{resource.get('type')}' has invalid API version '{api_version}'")

    for name, variable in parsed.get("variables", {}).items():
        if not name.endswith("RoleId"):
            continue
        for role_id in guid_literals(variable):
            if role_id not in KNOWN_ROLE_IDS:
                problems.append(f"variable '{name}': role definition id {role_id} is not a known built-in role")

    for name, module in parsed.get("modules", {}).items():
        module_path = (path.parent / module.get("detail", {}).get("path", "")).resolve()
        target = parsed_by_path.get(module_path)
        if target is None:
            problems.append(f"module '{name}': {module_path} is missing, did not parse, or is outside the checked directory")
            continue
        declared = target.get("parameters", {})
        passed = module_config(module).get("params", {})
        for unknown in sorted(set(passed) - set(declared)):
            problems.append(f"module '{name}': passes '{unknown}', which {module_path.name} does not declare")
        required = {p for p, spec in declared.items() if spec.get("default") is None}
        for missing in sorted(required - set(passed)):
            problems.append(f"module '{name}': does not pass required parameter '{missing}' of {module_path.name}")

    return problems


def check_parameters_file(path: Path, main: dict) -> list[str]:
    problems: list[str] = []
    values = json.loads(path.read_text()).get("parameters", {})
    declared = main.get("parameters", {})
    for unknown in sorted(set(values) - set(declared)):
        problems.append(f"parameter '{unknown}' is not declared in main.bicep")
    required = {p for p, spec in declared.items() if spec.get("default") is None}
    for missing in sorted(required - set(values)):
        problems.append(f"required parameter '{missing}' of main.bicep has no value")
    for name, entry in values.items():
        allowed = allowed_values(declared.get(name, {}))
        value = entry.get("value")
        if allowed is not None and value not in allowed:
            problems.append(f"parameter '{name}': {value!r} is not in @allowed {allowed}")
    return problems


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "infra").resolve()
    files = sorted(root.rglob("*.bicep"))
    if not files:
        print(f"check-bicep: no .bicep files under {root}", file=sys.stderr)
        return 1

    ts_parser = tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))
    pycep = BicepParser()
    problems: dict[Path, list[str]] = {}
    parsed_by_path: dict[Path, dict] = {}

    for path in files:
        file_problems = [f"tree-sitter: {e}" for e in syntax_errors(ts_parser, path.read_bytes())]
        try:
            parsed_by_path[path] = pycep.parse(file_path=path)
        except Exception as error:  # pycep raises lark errors of several types
            first_line = str(error).strip().splitlines()[0]
            file_problems.append(f"pycep-parser: {type(error).__name__}: {first_line}")
        problems[path] = file_problems

    for path, parsed in parsed_by_path.items():
        problems[path].extend(check_file(path, parsed, parsed_by_path))

    main_path = root / "main.bicep"
    main_parsed = parsed_by_path.get(main_path)
    if main_parsed is None:
        problems.setdefault(main_path, []).append("main.bicep is missing or did not parse")
    else:
        for missing in sorted(REQUIRED_MAIN_OUTPUTS - set(main_parsed.get("outputs", {}))):
            problems[main_path].append(f"output '{missing}' is missing")
        for parameters_file in sorted(root.glob("*.parameters*.json")):
            problems[parameters_file] = check_parameters_file(parameters_file, main_parsed)

    failed = 0
    for path, file_problems in sorted(problems.items()):
        relative = path.relative_to(root.parent) if path.is_relative_to(root.parent) else path
        if file_problems:
            failed += 1
            for problem in file_problems:
                print(f"{relative}: {problem}")
        else:
            print(f"{relative}: ok")

    print(f"check-bicep: {len(problems) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
