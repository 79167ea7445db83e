metadata description = 'A StorageV2 account of the app: the host account (Functions host storage, work queues, deployment package) or the archive account (write-once call records), or both in one for small deployments.'

// Network, two modes (main.bicep vnetEnabled):
// - public (default): Flex Consumption without VNet integration reaches storage over the public
//   endpoint from outbound addresses that are neither fixed nor listable, so an IP firewall
//   cannot admit the app; public network access stays enabled and access is controlled by
//   identity: shared key (account keys, SAS) is off, every caller needs an Entra ID token and an
//   RBAC role (rbac.bicep);
// - private (privateNetworking): public network access Disabled, no exception; the app reaches
//   the account through its VNet integration and the private endpoints of network.bicep, and
//   ARM (which creates containers, queues and policies) is the control plane, not the network
//   path. docs/networking.md says how operators and `azd deploy` get in.

@maxLength(24)
@description('Required. Name of the storage account (3-24 lower-case letters and digits).')
param name string

@description('Required. Region of the account.')
param location string

@description('Optional. Tags of every resource in this module.')
param tags { *: string } = {}

@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_RAGRS'
  'Standard_GZRS'
  'Standard_RAGZRS'
])
@description('Optional. Redundancy. The Archive access tier needs LRS, GRS or RA-GRS.')
param skuName string = 'Standard_LRS'

@description('Optional. Queues to create up front, so that the app never needs the right to create queues.')
param queueNames string[] = []

@description('Optional. Plain private blob containers to create (for example the Flex Consumption deployment container).')
param containerNames string[] = []

@description('Optional. The archive container, with its retention and tiering, when this account holds the archive; null otherwise.')
param archive archiveContainerType?

@description('Optional. Blob versioning and soft delete of this account.')
param dataProtection dataProtectionType = {
  versioning: false
  blobSoftDeleteDays: 7
  containerSoftDeleteDays: 7
}

@description('Optional. Resource id of the Log Analytics workspace that receives the blob service\'s resource logs; empty = no diagnostic setting.')
param logAnalyticsWorkspaceId string = ''

@description('Optional. Blob resource log categories sent to the workspace. StorageRead logs every read and list, which costs the most and proves the least.')
param blobLogCategories logCategoryType[] = [
  'StorageWrite'
  'StorageDelete'
]

@description('Optional. Queue resource log categories sent to the workspace (when the account has queues): who put, changed or deleted which message.')
param queueLogCategories logCategoryType[] = [
  'StorageWrite'
  'StorageDelete'
]

@description('Optional. true = reachable only through private endpoints: public network access Disabled (main.bicep vnetEnabled).')
param privateNetworking bool = false

@description('Optional. A CanNotDelete management lock on the account: nobody, whatever their role, deletes it (or the resource group holding it) until the lock is removed. Data-plane deletes are not affected; the retention policy covers those.')
param deleteLock bool = false

var softDeleteOff = {
  enabled: false
}
var blobSoftDeleteOn = {
  enabled: true
  days: dataProtection.blobSoftDeleteDays
}
var containerSoftDeleteOn = {
  enabled: true
  days: dataProtection.containerSoftDeleteDays
}

var archiveName = archive.?name ?? ''
var immutabilityDays = archive.?immutabilityDays ?? 0
var immutabilityLocked = archive.?immutabilityLocked ?? false
var coolAfterDays = archive.?coolAfterDays ?? 0
var archiveAfterDays = archive.?archiveAfterDays ?? 0
var tierToCool = {
  tierToCool: {
    daysAfterModificationGreaterThan: coolAfterDays
  }
}
var tierToArchive = {
  tierToArchive: {
    daysAfterModificationGreaterThan: archiveAfterDays
  }
}
// Archive blobs are written once, so "modified" is "written"
var tieringActions = union(coolAfterDays > 0 ? tierToCool : {}, archiveAfterDays > 0 ? tierToArchive : {})

// Hardened StorageV2: no shared key, TLS 1.2, HTTPS only, no anonymous blob access, copies only
// between accounts of this tenant
resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: public mode only (vnetEnabled=false): Flex Consumption without VNet integration has no fixed outbound IPs to allow; access is by Entra ID + RBAC only (shared key off). With vnetEnabled the default action is Deny.
  // checkov:skip=CKV_AZURE_59: public mode only (vnetEnabled=false): the app reaches the account over its public endpoint; nothing is reachable without an Entra ID token and a role. With vnetEnabled public network access is Disabled.
  // checkov:skip=CKV_AZURE_206: redundancy is a parameter (LRS by default to keep cost low; choose GRS/GZRS for the archive of a production tenant)
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    allowedCopyScope: 'AAD'
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    // Each on one line, as `privateNetworking ? private : public`: the checkov test scans both
    // modes by resolving exactly this form (tests/integration/test_infra.py)
    publicNetworkAccess: privateNetworking ? 'Disabled' : 'Enabled'
    dnsEndpointType: 'Standard'
    networkAcls: {
      defaultAction: privateNetworking ? 'Deny' : 'Allow'
      // Trusted Azure services only while public access is Enabled; Disabled admits none
      bypass: 'AzureServices'
    }
  }
}

// Azure Resource Manager refuses to delete a locked resource, and so the resource group
// holding it (learn.microsoft.com/azure/azure-resource-manager/management/lock-resources):
// `azd down` stops before deleting anything. A management lock does not stop data-plane
// deletes; the retention policy and the write-once role do.
resource lock 'Microsoft.Authorization/locks@2020-05-01' = if (deleteLock) {
  name: 'archive-cannot-delete'
  scope: storage
  properties: {
    level: 'CanNotDelete'
    notes: 'Holds the call record archive. Remove this lock deliberately (infra/README.md, "Tear down") before deleting the account or its resource group.'
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    isVersioningEnabled: dataProtection.versioning
    deleteRetentionPolicy: dataProtection.blobSoftDeleteDays > 0 ? blobSoftDeleteOn : softDeleteOff
    containerDeleteRetentionPolicy: dataProtection.containerSoftDeleteDays > 0 ? containerSoftDeleteOn : softDeleteOff
  }
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for containerName in containerNames: {
    parent: blobService
    name: containerName
    properties: {
      publicAccess: 'None'
    }
  }
]

// One blob per (record id, version), written only if absent
resource archiveContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = if (!empty(archiveName)) {
  parent: blobService
  name: empty(archiveName) ? 'unused' : archiveName
  properties: {
    publicAccess: 'None'
  }
}

// Time-based retention (container-level WORM), created unlocked. A locked policy cannot be
// written by a template at all (locking is a separate POST, and a locked policy only accepts
// "extend"), so with locked=true the azd postprovision hook creates, locks and extends it and
// this resource stays out of the deployment.
resource archiveImmutability 'Microsoft.Storage/storageAccounts/blobServices/containers/immutabilityPolicies@2023-05-01' = if (!empty(archiveName) && immutabilityDays > 0 && !immutabilityLocked) {
  parent: archiveContainer
  name: 'default'
  properties: {
    immutabilityPeriodSinceCreationInDays: immutabilityDays
    allowProtectedAppendWrites: false
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = if (!empty(queueNames)) {
  parent: storage
  name: 'default'
}

resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = [
  for queueName in queueNames: {
    parent: queueService
    name: queueName
  }
]

// Tiering works on immutable blobs too: every access tier supports immutable storage and Set
// Blob Tier is allowed under a retention policy (learn.microsoft.com/azure/storage/blobs/
// immutable-storage-overview#access-tiers). Nothing here ever deletes.
resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = if (!empty(archiveName) && !empty(tieringActions)) {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'archive-tiering'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${archiveName}/'
              ]
            }
            actions: {
              baseBlob: tieringActions
            }
          }
        }
      ]
    }
  }
}

// Who wrote, read or deleted which blob, with the caller's object id, kept in Log Analytics
// (table StorageBlobLogs) where the app's identity has no access
resource blobDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (!empty(logAnalyticsWorkspaceId) && !empty(blobLogCategories)) {
  name: 'blob-audit-to-log-analytics'
  scope: blobService
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      for category in blobLogCategories: {
        category: category
        enabled: true
      }
    ]
  }
}

// Who put, updated or deleted queue messages (table StorageQueueLogs): a record dropped from
// the work queue, or a forged one, leaves a row with the caller's object id
resource queueDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = if (!empty(queueNames) && !empty(logAnalyticsWorkspaceId) && !empty(queueLogCategories)) {
  name: 'queue-audit-to-log-analytics'
  scope: queueService
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      for category in queueLogCategories: {
        category: category
        enabled: true
      }
    ]
  }
}

@description('Resource id of the storage account.')
output id string = storage.id

@description('Name of the storage account.')
output name string = storage.name

@description('Blob service endpoint, with a trailing slash.')
output blobEndpoint string = storage.properties.primaryEndpoints.blob

@description('Queue service endpoint, with a trailing slash.')
output queueEndpoint string = storage.properties.primaryEndpoints.queue

// =============== //
//   Definitions   //
// =============== //

@export()
@description('The archive container and what protects and tiers it. Fields: name; immutabilityDays (time-based retention in days since each blob was written, 0 = none); immutabilityLocked (true = the policy is locked by the azd postprovision hook: it can never be shortened or removed); coolAfterDays and archiveAfterDays (lifecycle tiering, 0 = never).')
type archiveContainerType = {
  name: string
  immutabilityDays: int
  immutabilityLocked: bool
  coolAfterDays: int
  archiveAfterDays: int
}

@export()
@description('Blob versioning and soft delete. Fields: versioning; blobSoftDeleteDays and containerSoftDeleteDays (0 = off).')
type dataProtectionType = {
  versioning: bool
  blobSoftDeleteDays: int
  containerSoftDeleteDays: int
}

@export()
@description('A blob or queue service resource log category (Azure Monitor, tables StorageBlobLogs and StorageQueueLogs).')
type logCategoryType = 'StorageRead' | 'StorageWrite' | 'StorageDelete'
