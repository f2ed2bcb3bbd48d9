// Flex Consumption plan and the function app that runs the vcore-migrate
// custom handler. This file is the only place that sets app settings, and
// tests/deploy_layout.rs compares the keys of `appSettings` below with the
// settings the service reads.

@description('Name of the Flex Consumption plan.')
param planName string

@description('Name of the function app; it becomes <name>.azurewebsites.net.')
param appName string

@description('Azure region of the plan and the app.')
param location string

@description('Tags applied to the plan and the app.')
param tags object = {}

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Client id of the user-assigned identity.')
param identityClientId string

@description('Name of the storage account behind AzureWebJobsStorage.')
param storageAccountName string

@description('URL of the blob container that holds the deployment package.')
param deploymentContainerUrl string

@description('Application Insights connection string.')
param applicationInsightsConnectionString string

@description('Resource id of the delegated subnet for VNet integration; empty for none.')
param subnetId string = ''

@description('Fixed outbound IP of the app, reported in preflight firewall hints; empty when there is none.')
param outboundIp string = ''

@description('Upper bound of instances per scale group (40-1000).')
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

@description('Prefix of the service table and queue names.')
param storagePrefix string

@description('Seconds one task invocation works before it checkpoints and re-enqueues itself.')
param taskTimeBudgetSeconds int

@description('Seconds a started task keeps its lease before the scheduler re-enqueues it.')
param leaseSeconds int

@description('Queue that receives job events as CloudEvents; empty for none.')
param eventsQueueName string = ''

@description('HMAC-SHA256 key that signs job event callbacks; empty rejects jobs with a callbackUrl.')
@secure()
param callbackSigningKey string = ''

@description('Log format of the service: json for Application Insights queries, text for reading.')
@allowed([
  'json'
  'text'
])
param logFormat string = 'json'

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

// Flex Consumption takes the runtime from functionAppConfig.runtime, so
// FUNCTIONS_WORKER_RUNTIME and FUNCTIONS_EXTENSION_VERSION are not set here:
// the platform rejects or ignores them on this plan.
var appSettings = union(
  {
    AzureWebJobsStorage__accountName: storageAccountName
    AzureWebJobsStorage__credential: 'managedidentity'
    AzureWebJobsStorage__clientId: identityClientId
    APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
    APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
    VCM_MANAGED_IDENTITY_CLIENT_ID: identityClientId
    VCM_STORAGE_PREFIX: storagePrefix
    VCM_TASK_TIME_BUDGET_SECONDS: string(taskTimeBudgetSeconds)
    VCM_LEASE_SECONDS: string(leaseSeconds)
    VCM_LOG_FORMAT: logFormat
    VCM_AZURE_CREDENTIAL: 'managedidentity'
    VCM_SECRET_CACHE_SECONDS: '300'
    VCM_PREFLIGHT_TIMEOUT_SECONDS: '15'
    // Callbacks to loopback addresses exist for local tests only.
    VCM_CALLBACK_ALLOW_LOOPBACK: 'false'
  },
  empty(outboundIp) ? {} : { VCM_OUTBOUND_IP: outboundIp },
  empty(eventsQueueName) ? {} : { VCM_EVENTS_QUEUE: eventsQueueName },
  empty(callbackSigningKey) ? {} : { VCM_CALLBACK_SIGNING_KEY: callbackSigningKey }
)

resource app 'Microsoft.Web/sites@2024-04-01' = {
  name: appName
  location: location
  tags: tags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    virtualNetworkSubnetId: empty(subnetId) ? null : subnetId
    siteConfig: {
      minTlsVersion: '1.2'
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'custom'
        version: '1.0'
      }
    }
  }
}

resource settings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: app
  name: 'appsettings'
  properties: appSettings
}

output name string = app.name
output defaultHostName string = app.properties.defaultHostName
