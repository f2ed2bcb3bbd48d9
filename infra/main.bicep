// Everything vcore-migrate needs in one resource group deployment: a Flex
// Consumption function app running the custom handler, its storage account
// (shared keys off), a user-assigned identity with least-privilege roles,
// Application Insights, a Key Vault in RBAC mode (new, or an existing one by
// name), and optional VNet integration with a NAT gateway so the app has one
// fixed outbound IP for the target's firewall.
//
// Deploy: az deployment group create -g <group> -f infra/main.bicep -p @infra/main.parameters.json
// See docs/deploy.md for the whole path from an empty subscription to a
// finished migration.

targetScope = 'resourceGroup'

@description('Azure region of every resource. Flex Consumption is not offered in every region.')
param location string = resourceGroup().location

@description('Short prefix of all resource names: lowercase letters and digits.')
@minLength(2)
@maxLength(10)
param namePrefix string = 'vcm'

@description('Name of the function app; empty derives one from namePrefix and the resource group.')
param functionAppName string = ''

@description('Name of an existing Key Vault (RBAC mode) to use instead of creating one; empty creates a vault.')
param existingKeyVaultName string = ''

@description('Resource group of existingKeyVaultName; defaults to this deployment\'s group.')
param existingKeyVaultResourceGroup string = resourceGroup().name

@description('Object id of the user or group that stores the connection strings in the new vault (Key Vault Secrets Officer); empty grants nobody. Ignored for an existing vault.')
param keyVaultOfficerPrincipalId string = ''

@description('Principal type of keyVaultOfficerPrincipalId.')
@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
param keyVaultOfficerPrincipalType string = 'User'

@description('IPv4 addresses or CIDR ranges allowed through the new vault\'s firewall, for example the operator\'s address. Empty leaves the firewall open; when set, the app\'s fixed outbound IP is added. Ignored for an existing vault.')
param keyVaultAllowedIpRanges array = []

@description('Creates a VNet, a NAT gateway and a static public IP so all outbound traffic leaves from one address.')
param enableVnetIntegration bool = true

@description('Address space of the virtual network.')
param vnetAddressPrefix string = '10.40.0.0/16'

@description('Address range of the subnet delegated to the function app.')
param appSubnetPrefix string = '10.40.0.0/24'

@description('Upper bound of instances per scale group (40-1000). Lower it when a throttled source cannot take more parallel readers.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Memory of each instance in MB.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

@description('Prefix of the service table and queue names: lowercase letters and digits.')
@minLength(3)
@maxLength(40)
param storagePrefix string = 'vcm'

@description('Seconds one task invocation works before it checkpoints and re-enqueues itself; keep it far below host.json functionTimeout.')
@minValue(10)
@maxValue(300)
param taskTimeBudgetSeconds int = 60

@description('Seconds a started task keeps its lease before the scheduler re-enqueues it; must exceed taskTimeBudgetSeconds.')
@minValue(60)
param leaseSeconds int = 300

@description('Queue that receives job events as CloudEvents; empty sends no events.')
param eventsQueueName string = ''

@description('HMAC-SHA256 key that signs job event callbacks (x-vcm-signature header); empty rejects jobs with a callbackUrl.')
@secure()
param callbackSigningKey string = ''

@description('Log format of the service.')
@allowed([
  'json'
  'text'
])
param logFormat string = 'json'

@description('Tags applied to every resource.')
param tags object = {}

var token = uniqueString(resourceGroup().id, namePrefix)
var appName = empty(functionAppName) ? '${namePrefix}-func-${token}' : functionAppName
var deploymentContainerName = 'app-package'
var workQueueNames = [
  '${storagePrefix}-plan'
  '${storagePrefix}-copy'
  '${storagePrefix}-stream'
  '${storagePrefix}-verify'
  '${storagePrefix}-index'
]
var queueNames = empty(eventsQueueName) ? workQueueNames : concat(workQueueNames, [eventsQueueName])
var createKeyVault = empty(existingKeyVaultName)

module identity 'modules/identity.bicep' = {
  name: 'identity'
  params: {
    name: '${namePrefix}-id-${token}'
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    name: take('${namePrefix}st${token}', 24)
    location: location
    tags: tags
    deploymentContainerName: deploymentContainerName
    queueNames: queueNames
    principalId: identity.outputs.principalId
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    logAnalyticsName: '${namePrefix}-logs-${token}'
    applicationInsightsName: '${namePrefix}-appi-${token}'
    location: location
    tags: tags
    principalId: identity.outputs.principalId
  }
}

module network 'modules/network.bicep' = if (enableVnetIntegration) {
  name: 'network'
  params: {
    namePrefix: '${namePrefix}-${token}'
    location: location
    tags: tags
    addressPrefix: vnetAddressPrefix
    appSubnetPrefix: appSubnetPrefix
  }
}

var outboundIp = enableVnetIntegration ? network.outputs.outboundIp : ''

// A vault firewall that admits only listed ranges must also admit the app.
var keyVaultIpRanges = empty(keyVaultAllowedIpRanges) || empty(outboundIp) ? keyVaultAllowedIpRanges : concat(keyVaultAllowedIpRanges, [outboundIp])

module newKeyVault 'modules/keyvault.bicep' = if (createKeyVault) {
  name: 'keyvault'
  params: {
    name: take('${namePrefix}-kv-${token}', 24)
    location: location
    tags: tags
    readerPrincipalId: identity.outputs.principalId
    officerPrincipalId: keyVaultOfficerPrincipalId
    officerPrincipalType: keyVaultOfficerPrincipalType
    allowedIpRanges: keyVaultIpRanges
  }
}

module existingKeyVault 'modules/keyvault-access.bicep' = if (!createKeyVault) {
  name: 'keyvault-access'
  scope: resourceGroup(existingKeyVaultResourceGroup)
  params: {
    vaultName: existingKeyVaultName
    readerPrincipalId: identity.outputs.principalId
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    planName: '${namePrefix}-plan-${token}'
    appName: appName
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    subnetId: enableVnetIntegration ? network.outputs.appSubnetId : ''
    outboundIp: outboundIp
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    storagePrefix: storagePrefix
    taskTimeBudgetSeconds: taskTimeBudgetSeconds
    leaseSeconds: leaseSeconds
    eventsQueueName: eventsQueueName
    callbackSigningKey: callbackSigningKey
    logFormat: logFormat
  }
}

@description('Base URL of the job API; send the function key in the x-functions-key header.')
output apiBaseUrl string = 'https://${functionApp.outputs.defaultHostName}/api'

@description('Fixed outbound IPv4 address to allow on the vCore (and source) firewall; empty without VNet integration.')
output outboundIp string = outboundIp

@description('Principal (object) id of the app identity, for extra role assignments.')
output identityPrincipalId string = identity.outputs.principalId

@description('Client id of the app identity.')
output identityClientId string = identity.outputs.clientId

@description('Name of the function app, for az functionapp commands.')
output functionAppName string = functionApp.outputs.name

@description('Name of the storage account behind AzureWebJobsStorage.')
output storageAccountName string = storage.outputs.name

@description('Name of the Key Vault that holds the connection strings.')
output keyVaultName string = createKeyVault ? newKeyVault.outputs.name : existingKeyVault.outputs.name

@description('URI of the Key Vault, as a job\'s credential references use it.')
output keyVaultUri string = createKeyVault ? newKeyVault.outputs.uri : existingKeyVault.outputs.uri
