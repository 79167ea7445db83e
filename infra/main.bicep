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

@description('The previous Graph clientState, only while a rotation is under way (docs/operations.md): written to Key Vault as a second secret and accepted on notifications beside the current one. Empty = no rotation.')
@secure()
@maxLength(128)
param graphClientStatePrevious string = ''

@description('Microsoft Graph root without the version: global, US Gov L4, US Gov L5 (callRecords are not offered in the China cloud).')
@allowed([
  'https://graph.microsoft.com'
  'https://graph.microsoft.us'
  'https://dod-graph.microsoft.us'
])
param graphBaseUrl string = 'https://graph.microsoft.com'

@description('Redundancy of the host account (Functions host storage, queues, deployment package: nothing that outlives a redeploy).')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_GZRS'
  'Standard_RAGZRS'
])
param storageSkuName string = 'Standard_LRS'

@description('Redundancy of the archive account. The Archive tier (archiveArchiveAfterDays) needs LRS, GRS or RA-GRS; ZRS/GZRS accounts cannot use it. GRS keeps a copy in the paired region.')
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_GZRS'
  'Standard_RAGZRS'
])
param archiveStorageSkuName string = 'Standard_LRS'

@description('Put the archive container in the host storage account instead of an account of its own: one account less, for small or trial deployments. The identity then holds Storage Blob Data Owner over the archive too and could delete records; only a retention policy (archiveImmutabilityDays) still prevents it.')
param archiveInHostAccount bool = false

@description('Time-based retention (container-level WORM) on the archive container, in days since each blob was written: no one, the app\'s identity included, can change or delete a record before then, and a record is never overwritten, even after. 365 by default (infra/README.md says why); 0 = no policy.')
@minValue(0)
@maxValue(146000)
param archiveImmutabilityDays int = 365

@description('IRREVERSIBLE. true = lock the retention policy (the azd postprovision hook does it; templates cannot). A locked policy can never be shortened or removed, only extended (at most five times); nobody can delete a record, the container or the account until every record is past its retention. Test with false first.')
param archiveImmutabilityLocked bool = false

@description('A CanNotDelete lock on the account that holds the archive: nobody deletes the account, or the resource group holding it, until the lock is removed, so `azd down` stops before deleting anything (infra/README.md, "Tear down").')
param archiveDeleteLock bool = true

@description('Lifecycle rule: move archived records to the Cool tier this many days after they were written. 0 = never.')
@minValue(0)
param archiveCoolAfterDays int = 0

@description('Lifecycle rule: move archived records to the Archive tier this many days after they were written. 0 = never.')
@minValue(0)
param archiveArchiveAfterDays int = 0

@description('Blob versioning on the account that holds the archive. On by default: the app never overwrites a record, so it costs nothing, and if something did overwrite one the previous version stays, which the app\'s role cannot delete. In a shared account (archiveInHostAccount) each deployment also leaves its old package behind as a version.')
param blobVersioningEnabled bool = true

@description('Blob soft delete retention in days on the account that holds the archive (0 = off).')
@minValue(0)
@maxValue(365)
param blobSoftDeleteDays int = 7

@description('Container soft delete retention in days on the account that holds the archive (0 = off).')
@minValue(0)
@maxValue(365)
param containerSoftDeleteDays int = 7

@description('Also send the archive\'s read and list operations (StorageRead) to Log Analytics. Writes and deletes are always sent; reads are the bulk of the volume (every existence check, listing and health call) and say least about tampering.')
param archiveReadLogsEnabled bool = false

@description('Memory of each Flex Consumption instance (MB): 512 has 0.25 CPU core, 2048 one core, 4096 two. Billing is memory x active seconds, and an execution mostly waits on Graph, so 512 costs a quarter of 2048 for the same work; see "What it costs" in README.md for the measurements and the cold-start trade-off.')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 512

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

@description('Retention in days of the audit logs (tables StorageBlobLogs, StorageQueueLogs, AzureDiagnostics: storage writes and deletes, Key Vault requests); telemetry keeps logRetentionDays.')
@minValue(30)
@maxValue(730)
param auditLogRetentionDays int = 365

@description('Send the host account\'s blob and queue writes and deletes (deployment package, state blobs, the work queues) to Log Analytics too, so tampering there is seen.')
param hostAuditLogsEnabled bool = true

@description('Key Vault purge protection: a deleted vault can be recovered, never purged, for its 7 days of soft delete. Once on it cannot be turned off; false only for throwaway trials.')
param keyVaultPurgeProtection bool = true

@description('Always-ready instances for the HTTP functions (the webhooks): Graph waits 3 s for an answer and a cold start costs seconds. 0 = scale from zero (no standing cost).')
@minValue(0)
@maxValue(10)
param alwaysReadyHttpInstances int = 1

@description('Private networking: storage and Key Vault reachable only through private endpoints in a virtual network the app integrates with; their public network access Disabled. The webhooks stay public (Graph calls them). docs/networking.md.')
param vnetEnabled bool = false

@description('Address space of the virtual network (vnetEnabled).')
param vnetAddressPrefix string = '10.0.0.0/16'

@description('Subnet of the app\'s VNet integration, delegated to Microsoft.App/environments (vnetEnabled); one address per instance.')
param vnetAppSubnetPrefix string = '10.0.1.0/24'

@description('Subnet of the private endpoints (vnetEnabled).')
param vnetPrivateEndpointSubnetPrefix string = '10.0.2.0/24'

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = 'func-api-${resourceToken}'
// Names the Python code relies on (shared/settings.py defaults and the README)
var archiveContainerName = 'callrecords'
// Derived call-quality tables (Parquet), rebuilt from the archive by the rebuild_tables timer:
// beside the archive, but replaced on every rebuild, so with no retention and a role of its own
var analyticsContainerName = 'callrecords-tables'
var callrecordsQueueName = 'callrecords'
var poisonQueueName = '${callrecordsQueueName}-poison'
var deploymentContainerName = 'app-package-${take(functionAppName, 32)}-${take(resourceToken, 7)}'
var pythonVersion = '3.11'
var archive = {
  name: archiveContainerName
  immutabilityDays: archiveImmutabilityDays
  immutabilityLocked: archiveImmutabilityLocked
  coolAfterDays: archiveCoolAfterDays
  archiveAfterDays: archiveArchiveAfterDays
}
var archiveDataProtection = {
  versioning: blobVersioningEnabled
  blobSoftDeleteDays: blobSoftDeleteDays
  containerSoftDeleteDays: containerSoftDeleteDays
}
// Host blobs (timer status, host keys, the package) are rewritten all the time: versions would
// only pile up
var hostDataProtection = {
  versioning: false
  blobSoftDeleteDays: 7
  containerSoftDeleteDays: 7
}
// What the host account's blob and queue services log: who changed or deleted a blob (the
// package, state) or a message
var hostLogCategories = [
  'StorageWrite'
  'StorageDelete'
]
var archiveLogCategories = archiveReadLogsEnabled ? [
  'StorageWrite'
  'StorageDelete'
  'StorageRead'
] : [
  'StorageWrite'
  'StorageDelete'
]

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'app/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-api-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'app/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
    retentionInDays: logRetentionDays
    auditRetentionInDays: auditLogRetentionDays
  }
}

// The host account: Functions host storage, the work queues, the deployment package, the app's
// own small state blobs, and the archive too when archiveInHostAccount is set
module hostStorage 'app/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    skuName: storageSkuName
    queueNames: [
      callrecordsQueueName
      poisonQueueName
    ]
    containerNames: concat([deploymentContainerName], archiveInHostAccount ? [analyticsContainerName] : [])
    archive: archiveInHostAccount ? archive : null
    dataProtection: archiveInHostAccount ? archiveDataProtection : hostDataProtection
    logAnalyticsWorkspaceId: (archiveInHostAccount || hostAuditLogsEnabled) ? monitoring.outputs.logAnalyticsId : ''
    blobLogCategories: archiveInHostAccount ? archiveLogCategories : hostLogCategories
    queueLogCategories: hostLogCategories
    privateNetworking: vnetEnabled
    deleteLock: archiveInHostAccount && archiveDeleteLock
  }
}

// The archive account: the records alone, written once by a role that cannot delete, so that
// neither the app nor anything holding its identity can remove one
module archiveStorage 'app/storage.bicep' = if (!archiveInHostAccount) {
  name: 'archive-storage'
  scope: rg
  params: {
    name: 'starchive${resourceToken}'
    location: location
    tags: tags
    skuName: archiveStorageSkuName
    containerNames: [
      analyticsContainerName
    ]
    archive: archive
    dataProtection: archiveDataProtection
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsId
    blobLogCategories: archiveLogCategories
    privateNetworking: vnetEnabled
    deleteLock: archiveDeleteLock
  }
}

// The ?: makes sure the archive module's outputs are read only when it is deployed
// (learn.microsoft.com/azure/azure-resource-manager/bicep/conditional-resource-deployment)
var archiveAccountName = archiveInHostAccount ? hostStorage.outputs.name : archiveStorage.outputs.name
var archiveBlobEndpoint = archiveInHostAccount ? hostStorage.outputs.blobEndpoint : archiveStorage.outputs.blobEndpoint
var archiveAccountId = archiveInHostAccount ? hostStorage.outputs.id : archiveStorage.outputs.id

module keyVault 'app/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: 'kv-${resourceToken}'
    location: location
    tags: tags
    clientStateSecretName: 'graph-client-state'
    clientStateValue: graphClientState
    previousClientStateValue: graphClientStatePrevious
    rotationUnderWay: !empty(graphClientStatePrevious)
    enablePurgeProtection: keyVaultPurgeProtection
    privateNetworking: vnetEnabled
    logAnalyticsWorkspaceId: monitoring.outputs.logAnalyticsId
  }
}

// The private network (vnetEnabled): the app's integration subnet, and a private endpoint with
// its DNS zone for every storage service the app uses and for Key Vault
module network 'app/network.bicep' = if (vnetEnabled) {
  name: 'network'
  scope: rg
  params: {
    name: 'vnet-${resourceToken}'
    location: location
    tags: tags
    addressPrefix: vnetAddressPrefix
    appSubnetPrefix: vnetAppSubnetPrefix
    privateEndpointSubnetPrefix: vnetPrivateEndpointSubnetPrefix
    privateEndpoints: concat(hostPrivateEndpoints, archiveInHostAccount ? [] : archivePrivateEndpoints, vaultPrivateEndpoints)
  }
}

// Host storage: blobs (AzureWebJobsStorage, the package, state), queues (the work queues) and
// tables (the Functions host's diagnostic events)
var hostPrivateEndpoints = [
  {
    name: '${hostStorage.outputs.name}-blob'
    resourceId: hostStorage.outputs.id
    groupId: 'blob'
  }
  {
    name: '${hostStorage.outputs.name}-queue'
    resourceId: hostStorage.outputs.id
    groupId: 'queue'
  }
  {
    name: '${hostStorage.outputs.name}-table'
    resourceId: hostStorage.outputs.id
    groupId: 'table'
  }
]
var archivePrivateEndpoints = [
  {
    name: '${archiveAccountName}-blob'
    resourceId: archiveAccountId
    groupId: 'blob'
  }
]
var vaultPrivateEndpoints = [
  {
    name: '${keyVault.outputs.name}-vault'
    resourceId: keyVault.outputs.id
    groupId: 'vault'
  }
]

module rbac 'app/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
    hostStorageAccountName: hostStorage.outputs.name
    queueNames: [
      callrecordsQueueName
      poisonQueueName
    ]
    archiveStorageAccountName: archiveAccountName
    archiveContainerName: archiveContainerName
    analyticsContainerName: analyticsContainerName
    keyVaultName: keyVault.outputs.name
    clientStateSecretName: keyVault.outputs.clientStateSecretName
    previousClientStateSecretName: keyVault.outputs.previousClientStateSecretName
    rotationUnderWay: !empty(graphClientStatePrevious)
    applicationInsightsName: monitoring.outputs.applicationInsightsName
  }
}

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
    instanceMemoryMB: instanceMemoryMB
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageBlobEndpoint: hostStorage.outputs.blobEndpoint
    storageQueueEndpoint: hostStorage.outputs.queueEndpoint
    archiveBlobEndpoint: archiveBlobEndpoint
    deploymentContainerName: deploymentContainerName
    archiveContainerName: archiveContainerName
    analyticsContainerName: analyticsContainerName
    callrecordsQueueName: callrecordsQueueName
    graphBaseUrl: graphBaseUrl
    clientStateSecretUri: keyVault.outputs.clientStateSecretUri
    previousClientStateSecretUri: keyVault.outputs.previousClientStateSecretUri
    virtualNetworkSubnetId: vnetEnabled ? network.outputs.appSubnetId : ''
    alwaysReadyHttpInstances: alwaysReadyHttpInstances
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    archiveRetryBaseSeconds: archiveRetryBaseSeconds
    archiveRetryWindowMinutes: archiveRetryWindowMinutes
    usageLogsBackfillDays: usageLogsBackfillDays
  }
  // The app resolves its Key Vault references and storage connections with these roles, and,
  // with vnetEnabled, through the private endpoints and DNS zones of the network module
  dependsOn: [
    rbac
  ]
}

module graphAppRole 'app/graph-app-role.bicep' = if (grantGraphPermission) {
  name: 'graph-app-role'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
  }
}

// Outputs become azd environment values (azd env get-values) and reach the azd hooks
@description('Region of every resource.')
output AZURE_LOCATION string = location

@description('Tenant of the deployment.')
output AZURE_TENANT_ID string = tenant().tenantId

@description('Resource group holding everything.')
output AZURE_RESOURCE_GROUP string = rg.name

@description('Name of the Function App.')
output AZURE_FUNCTION_NAME string = api.outputs.name

@description('Name of the Function App, under the name azd looks for (service api).')
output SERVICE_API_NAME string = api.outputs.name

@description('Base URL of the Function App.')
output SERVICE_API_URI string = 'https://${api.outputs.defaultHostName}'

@description('Change-notification webhook URL.')
output NOTIFICATION_URL string = api.outputs.notificationUrl

@description('Lifecycle-notification webhook URL.')
output LIFECYCLE_NOTIFICATION_URL string = api.outputs.lifecycleNotificationUrl

@description('Name of the host storage account.')
output AZURE_STORAGE_ACCOUNT_NAME string = hostStorage.outputs.name

@description('Blob endpoint of the host storage account.')
output AZURE_STORAGE_BLOB_ENDPOINT string = hostStorage.outputs.blobEndpoint

@description('Queue endpoint of the host storage account.')
output AZURE_STORAGE_QUEUE_ENDPOINT string = hostStorage.outputs.queueEndpoint

@description('Name of the account that holds the archive (the host account when archiveInHostAccount).')
output ARCHIVE_STORAGE_ACCOUNT_NAME string = archiveAccountName

@description('Blob endpoint of the account that holds the archive (ARCHIVE_STORAGE__blobServiceUri).')
output ARCHIVE_STORAGE_BLOB_ENDPOINT string = archiveBlobEndpoint

@description('Name of the archive container.')
output ARCHIVE_CONTAINER string = archiveContainerName
@description('The call-quality tables container (ANALYTICS_CONTAINER), in the archive\'s account.')
output ANALYTICS_CONTAINER string = analyticsContainerName

@description('Name of the work queue.')
output CALLRECORDS_QUEUE string = callrecordsQueueName

@description('Name of the Key Vault.')
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name

@description('Client id of the app\'s managed identity.')
output MANAGED_IDENTITY_CLIENT_ID string = identity.outputs.clientId

@description('Object id of the app\'s managed identity (what an administrator grants CallRecords.Read.All to).')
output MANAGED_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId

@description('Whether this deployment granted CallRecords.Read.All itself.')
output GRAPH_PERMISSION_GRANTED bool = grantGraphPermission

@description('Application Insights connection string.')
output APPLICATIONINSIGHTS_CONNECTION_STRING string = monitoring.outputs.connectionString

@description('Resource id of the virtual network (empty unless vnetEnabled): where an operator\'s VM or Cloud Shell must run to reach storage and Key Vault.')
output AZURE_VIRTUAL_NETWORK_ID string = vnetEnabled ? network.outputs.id : ''

@description('Resource id of the Log Analytics workspace holding telemetry and the audit logs.')
output AZURE_LOG_ANALYTICS_WORKSPACE_ID string = monitoring.outputs.logAnalyticsId
