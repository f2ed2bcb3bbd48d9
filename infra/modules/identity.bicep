// User-assigned managed identity that the function app uses for host storage,
// the deployment package, the service's tables and queues, Key Vault and
// Application Insights. A user-assigned identity (rather than the app's
// system-assigned one) exists before the app, so every role assignment is in
// place when the host first starts.

@description('Name of the user-assigned managed identity.')
param name string

@description('Azure region of the identity.')
param location string

@description('Tags applied to the identity.')
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
