// A new Key Vault in RBAC mode for the source and target connection strings.
// The app identity may only read secret values (Key Vault Secrets User). The
// optional operator principal may write them (Key Vault Secrets Officer),
// because in RBAC mode not even a subscription Owner can set a secret without
// a data-plane role.

@description('Key Vault name: 3-24 letters, digits and hyphens, globally unique.')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region of the vault.')
param location string

@description('Tags applied to the vault.')
param tags object = {}

@description('Principal id of the app identity that reads secrets.')
param readerPrincipalId string

@description('Object id of a user or group that may write secrets; empty grants nobody.')
param officerPrincipalId string = ''

@description('Principal type of officerPrincipalId.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param officerPrincipalType string = 'User'

@description('Public IPv4 addresses or CIDR ranges allowed through the vault firewall. Empty leaves the vault open to all networks (access still needs Entra ID and a role).')
param allowedIpRanges array = []

@description('Turns on purge protection. It cannot be turned off again, and a purge-protected vault name stays reserved for the retention period after deletion.')
param enablePurgeProtection bool = false

// Built-in role definition ids, from the Azure built-in roles reference.
var keyVaultSecretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'
var keyVaultSecretsOfficerRoleId = 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    // ARM rejects `false` here; leaving the property out means "off".
    enablePurgeProtection: enablePurgeProtection ? true : null
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: empty(allowedIpRanges) ? 'Allow' : 'Deny'
      ipRules: [
        for range in allowedIpRanges: {
          value: range
        }
      ]
    }
  }
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

resource officerRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(officerPrincipalId)) {
  name: guid(vault.id, officerPrincipalId, keyVaultSecretsOfficerRoleId)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsOfficerRoleId)
    principalId: officerPrincipalId
    principalType: officerPrincipalType
  }
}

output name string = vault.name
output uri string = vault.properties.vaultUri
