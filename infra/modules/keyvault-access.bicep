// Grants the app identity Key Vault Secrets User on a vault that already
// exists. main.bicep deploys this module into the vault's resource group. The
// vault must use the RBAC permission model; a vault that uses access policies
// ignores the role assignment, and the service then gets 403 on every read.

@description('Name of the existing Key Vault.')
param vaultName string

@description('Principal id of the app identity that reads secrets.')
param readerPrincipalId string

// Built-in role definition id of Key Vault Secrets User, from the Azure
// built-in roles reference.
var keyVaultSecretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: vaultName
}

resource readerRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, readerPrincipalId, keyVaultSecretsUserRoleId)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUserRoleId)
    principalId: readerPrincipalId
    principalType: 'ServicePrincipal'
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
output rbacEnabled bool = vault.properties.enableRbacAuthorization
