// Role assignments of the app's user-assigned managed identity. Each role is the smallest
// built-in role that covers what the code does, on the narrowest scope Azure allows for it.
// Role definition ids are those of Microsoft's built-in roles (Azure built-in roles docs);
// tests/test_infra.py checks every id against the role named next to it.
param principalId string
param storageAccountName string
param archiveContainerName string
param queueNames array
param keyVaultName string
param clientStateSecretName string
param applicationInsightsName string

// Storage Blob Data Owner
var storageBlobDataOwnerRoleId = 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
// Storage Blob Data Contributor
var storageBlobDataContributorRoleId = 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
// Storage Queue Data Message Sender
var storageQueueDataMessageSenderRoleId = 'c6a89b2d-59bc-44d0-9896-0f6e12d7b80a'
// Storage Queue Data Message Processor
var storageQueueDataMessageProcessorRoleId = '8a0f0c08-91a1-4084-bc3d-661d67233fed'
// Storage Queue Data Reader
var storageQueueDataReaderRoleId = '19e7f393-937e-4f77-808e-94535e297925'
// Key Vault Secrets User
var keyVaultSecretsUserRoleId = '4633458b-17de-408a-b874-0445c86b69e6'
// Monitoring Metrics Publisher
var monitoringMetricsPublisherRoleId = '3913510d-42f4-4e42-8a64-420c390055eb'

// The storage account (host storage and archive)
resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

// Its blob service
resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

// The archive container
resource archiveContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = {
  parent: blobService
  name: archiveContainerName
}

// Its queue service
resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' existing = {
  parent: storage
  name: 'default'
}

// The work queue and the poison queue
resource queues 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = [
  for queueName in queueNames: {
    parent: queueService
    name: queueName
  }
]

// The Key Vault and the clientState secret
resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

// The clientState secret
resource clientStateSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' existing = {
  parent: vault
  name: clientStateSecretName
}

// The Application Insights component
resource applicationInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

// Storage Blob Data Owner on the storage account (b7e6dc6d-f1e8-4753-8033-0f276bb0955b): the Functions host (AzureWebJobsStorage) creates its containers, takes blob leases for timer singletons, keeps host keys, and Flex Consumption reads the deployment package with this identity; Microsoft documents Owner as the minimum for host storage
resource hostStorageBlobOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, principalId, storageBlobDataOwnerRoleId)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataOwnerRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Functions host storage (AzureWebJobsStorage): containers, leases, keys, deployment package'
  }
}

// Storage Blob Data Contributor on the archive container only (ba92f5b4-2d11-453d-a403-e96b0029c9fe): the archive writer writes each record if absent and reads for existence checks; kept separate from the host role so the archive keeps its own grant if ARCHIVE_STORAGE moves to another account
resource archiveBlobContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(archiveContainer.id, principalId, storageBlobDataContributorRoleId)
  scope: archiveContainer
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageBlobDataContributorRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Archive writer: write-if-absent and existence checks in the archive container'
  }
}

// Storage Queue Data Message Sender on each queue (c6a89b2d-59bc-44d0-9896-0f6e12d7b80a): the webhook enqueues record ids with the SDK, the archiver re-enqueues with a delay, the host moves failures to <queue>-poison, the CLI replays poison messages
resource queueSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (queueName, i) in queueNames: {
    name: guid(queues[i].id, principalId, storageQueueDataMessageSenderRoleId)
    scope: queues[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataMessageSenderRoleId)
      principalId: principalId
      principalType: 'ServicePrincipal'
      description: 'Send messages to ${queueName}'
    }
  }
]

// Storage Queue Data Message Processor on each queue (8a0f0c08-91a1-4084-bc3d-661d67233fed): the queue trigger receives and deletes messages; the CLI reads and removes poison messages
resource queueProcessor 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (queueName, i) in queueNames: {
    name: guid(queues[i].id, principalId, storageQueueDataMessageProcessorRoleId)
    scope: queues[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataMessageProcessorRoleId)
      principalId: principalId
      principalType: 'ServicePrincipal'
      description: 'Receive and delete messages of ${queueName}'
    }
  }
]

// Storage Queue Data Reader on each queue (19e7f393-937e-4f77-808e-94535e297925): queue properties and peek, for the queue depth (scale decisions, health and CLI status)
resource queueReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (queueName, i) in queueNames: {
    name: guid(queues[i].id, principalId, storageQueueDataReaderRoleId)
    scope: queues[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', storageQueueDataReaderRoleId)
      principalId: principalId
      principalType: 'ServicePrincipal'
      description: 'Peek and read the depth of ${queueName}'
    }
  }
]

// Key Vault Secrets User on the clientState secret only (4633458b-17de-408a-b874-0445c86b69e6): resolves the GRAPH_CLIENT_STATE Key Vault reference
resource clientStateSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(clientStateSecret.id, principalId, keyVaultSecretsUserRoleId)
  scope: clientStateSecret
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', keyVaultSecretsUserRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Read the Graph clientState secret (Key Vault reference)'
  }
}

// Monitoring Metrics Publisher on the Application Insights component (3913510d-42f4-4e42-8a64-420c390055eb): sends telemetry with Entra ID auth since local auth is disabled
resource appInsightsMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(applicationInsights.id, principalId, monitoringMetricsPublisherRoleId)
  scope: applicationInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', monitoringMetricsPublisherRoleId)
    principalId: principalId
    principalType: 'ServicePrincipal'
    description: 'Publish telemetry to Application Insights with Entra ID authentication'
  }
}
