// Call record archiver: Azure Functions (Flex Consumption) + Storage + Key Vault + monitoring,
// one user-assigned managed identity holding least-privilege roles and the Graph app role.
// Deployed by `azd up` (see infra/README.md). Every resource is written out in the small
// modules under infra/app/; nothing comes from a module registry.
targetScope = 'subscription'

@minLength(1)
@maxLength(64)
@description('Name of the azd environment; used for the resource group name and a unique token in resource names.')
param environmentName string

@minLength(1)
@description('Region for every resource. It must offer the Flex Consumption plan (az functionapp list-flexconsumption-locations).')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Grant the Microsoft Graph application permission CallRecords.Read.All to the managed identity with the Microsoft Graph Bicep extension. The deployer needs Privileged Role Administrator (or Global Administrator); set GRANT_GRAPH_PERMISSION=false otherwise and grant it by hand (infra/README.md).')
param grantGraphPermission bool = true

@description('The Graph subscription secret (clientState, at most 128 characters). azd generates it once per environment and keeps it in the environment config; it reaches Azure only as a Key Vault secret.')
@secure()
@minLength(32)
@maxLength(128)
@metadata({
  azd: {
    type: 'generate'
    config: {
      length: 64
      noSpecial: true
    }
  }
})
param graphClientState string

@description('Microsoft Graph root without the version: global, US Gov L4, US Gov L5 (callRecords are not offered in the China cloud).')
@allowed([
  'https://graph.microsoft.com'
  'https://graph.microsoft.us'
  'https://dod-graph.microsoft.us'
])
param graphBaseUrl string = 'https://graph.microsoft.com'

@description('Storage redundancy. The Archive tier (archiveArchiveAfterDays) needs LRS, GRS or RA-GRS; ZRS/GZRS accounts cannot use it.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_GZRS'
  'Standard_RAGZRS'
])
param storageSkuName string = 'Standard_LRS'

@description('Time-based retention (WORM) on the archive container, in days since each blob was written. 0 = no immutability policy. The policy is created unlocked; locking it is a separate, irreversible step (infra/README.md).')
@minValue(0)
@maxValue(146000)
param archiveImmutabilityDays int = 0

@description('Lifecycle rule: move archived records to the Cool tier this many days after they were written. 0 = never.')
@minValue(0)
param archiveCoolAfterDays int = 0

@description('Lifecycle rule: move archived records to the Archive tier this many days after they were written. 0 = never.')
@minValue(0)
param archiveArchiveAfterDays int = 0

@description('Blob versioning on the account. Off by default: archive blobs are written once and never overwritten, while every deployment would leave an old package version behind.')
param blobVersioningEnabled bool = false

@description('Blob soft delete retention in days (0 = off).')
@minValue(0)
@maxValue(365)
param blobSoftDeleteDays int = 7

@description('Container soft delete retention in days (0 = off).')
@minValue(0)
@maxValue(365)
param containerSoftDeleteDays int = 7

@description('Upper bound of Flex Consumption instances (also bounds the load on Graph).')
@minValue(1)
@maxValue(1000)
param maximumInstanceCount int = 40

@description('Seconds before the first retry of a record Graph does not have yet (ARCHIVE_RETRY_BASE_SECONDS).')
@minValue(1)
param archiveRetryBaseSeconds int = 60

@description('Minutes a record may stay "not yet available" before it goes to poison (ARCHIVE_RETRY_WINDOW_MINUTES).')
@minValue(1)
param archiveRetryWindowMinutes int = 240

@description('Days of PSTN and Direct Routing call logs the first hourly run reads back (USAGE_LOGS_BACKFILL_DAYS); Graph keeps them for months, by country.')
@minValue(1)
@maxValue(365)
param usageLogsBackfillDays int = 90

@description('Log Analytics retention in days (30 is included in the ingestion price).')
@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = 'func-api-${resourceToken}'
// Names the Python code and design.md rely on
var archiveContainerName = 'callrecords'
var callrecordsQueueName = 'callrecords'
var poisonQueueName = '${callrecordsQueueName}-poison'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'
var pythonVersion = '3.11'

// Resource group holding everything of this environment
resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

// User-assigned managed identity: the app's only identity (storage, Key Vault, App Insights, Graph)
module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-api-${resourceToken}'
    location: location
    tags: tags
  }
}

// Log Analytics workspace + workspace-based Application Insights with local auth disabled
module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
    retentionInDays: logRetentionDays
  }
}

// Storage account: host storage, the work queues, the archive and the deployment package
module storage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    skuName: storageSkuName
    archiveContainerName: archiveContainerName
    deploymentContainerName: deploymentContainerName
    queueNames: [
      callrecordsQueueName
      poisonQueueName
    ]
    archiveImmutabilityDays: archiveImmutabilityDays
    archiveCoolAfterDays: archiveCoolAfterDays
    archiveArchiveAfterDays: archiveArchiveAfterDays
    blobVersioningEnabled: blobVersioningEnabled
    blobSoftDeleteDays: blobSoftDeleteDays
    containerSoftDeleteDays: containerSoftDeleteDays
  }
}

// Key Vault (RBAC) holding the generated Graph clientState
module keyVault 'app/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: 'kv-${resourceToken}'
    location: location
    tags: tags
    clientStateSecretName: 'graph-client-state'
    clientStateValue: graphClientState
  }
}

// Role assignments of the managed identity, each on the narrowest scope that works
module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    archiveContainerName: archiveContainerName
    queueNames: [
      callrecordsQueueName
      poisonQueueName
    ]
    keyVaultName: keyVault.outputs.name
    clientStateSecretName: keyVault.outputs.clientStateSecretName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
  }
}

// Flex Consumption plan and the Function App with every app setting the code reads
module api 'app/api.bicep' = {
  name: 'api'
  scope: rg
  params: {
    name: functionAppName
    planName: 'plan-${resourceToken}'
    location: location
    tags: tags
    serviceName: 'api'
    pythonVersion: pythonVersion
    maximumInstanceCount: maximumInstanceCount
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageBlobEndpoint: storage.outputs.blobEndpoint
    storageQueueEndpoint: storage.outputs.queueEndpoint
    deploymentContainerName: deploymentContainerName
    archiveContainerName: archiveContainerName
    callrecordsQueueName: callrecordsQueueName
    graphBaseUrl: graphBaseUrl
    clientStateSecretUri: keyVault.outputs.clientStateSecretUri
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    archiveRetryBaseSeconds: archiveRetryBaseSeconds
    archiveRetryWindowMinutes: archiveRetryWindowMinutes
    usageLogsBackfillDays: usageLogsBackfillDays
  }
  // The app resolves its Key Vault reference and storage connections with these roles
  dependsOn: [
    rbac
  ]
}

// Graph app role CallRecords.Read.All for the managed identity (Microsoft Graph Bicep extension)
module graphAppRole 'app/graph-app-role.bicep' = if (grantGraphPermission) {
  name: 'graph-app-role'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
  }
}

// Outputs become azd environment values (azd env get-values)
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_NAME string = api.outputs.name
output SERVICE_API_NAME string = api.outputs.name
output SERVICE_API_URI string = 'https://${api.outputs.defaultHostName}'
output NOTIFICATION_URL string = api.outputs.notificationUrl
output LIFECYCLE_NOTIFICATION_URL string = api.outputs.lifecycleNotificationUrl
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name
output AZURE_STORAGE_BLOB_ENDPOINT string = storage.outputs.blobEndpoint
output AZURE_STORAGE_QUEUE_ENDPOINT string = storage.outputs.queueEndpoint
output ARCHIVE_CONTAINER string = archiveContainerName
output CALLRECORDS_QUEUE string = callrecordsQueueName
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output GRAPH_PERMISSION_GRANTED bool = grantGraphPermission
output APPLICATIONINSIGHTS_CONNECTION_STRING string = monitoring.outputs.connectionString
