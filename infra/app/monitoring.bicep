metadata description = 'Log Analytics workspace and workspace-based Application Insights that accepts telemetry only with Entra ID tokens.'

// Local (instrumentation key) auth is off: the app authenticates with its managed identity
// (APPLICATIONINSIGHTS_AUTHENTICATION_STRING) and holds Monitoring Metrics Publisher on the
// component (rbac.bicep). The same workspace receives the audit logs of the archive account and
// of Key Vault (diagnostic settings in storage.bicep and keyvault.bicep).

@description('Required. Name of the Log Analytics workspace.')
param logAnalyticsName string

@description('Required. Name of the Application Insights component.')
param applicationInsightsName string

@description('Required. Region of both.')
param location string

@description('Optional. Tags of both.')
param tags { *: string } = {}

@minValue(30)
@maxValue(730)
@description('Optional. Interactive retention of the workspace in days (30 is included in the ingestion price).')
param retentionInDays int = 30

@minValue(30)
@maxValue(730)
@description('Optional. Retention in days of the audit tables (StorageBlobLogs, StorageQueueLogs, AzureDiagnostics): who wrote, deleted or read what, kept longer than telemetry.')
param auditRetentionInDays int = 365

// The tables the diagnostic settings of storage.bicep and keyvault.bicep write to. Each keeps
// its own retention, so a year of audit costs the retention of the audit rows only, not of
// every trace (learn.microsoft.com/azure/azure-monitor/logs/data-retention-configure)
var auditTables = [
  'StorageBlobLogs'
  'StorageQueueLogs'
  'AzureDiagnostics'
]

// Pay-as-you-go, billed per GB ingested
resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    publicNetworkAccessForIngestion: 'Enabled'
    publicNetworkAccessForQuery: 'Enabled'
  }
}

resource auditTableRetention 'Microsoft.OperationalInsights/workspaces/tables@2022-10-01' = [
  for table in auditTables: {
    parent: logAnalytics
    name: table
    properties: {
      retentionInDays: auditRetentionInDays
      totalRetentionInDays: auditRetentionInDays
    }
  }
]

resource applicationInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: true
    IngestionMode: 'LogAnalytics'
    publicNetworkAccessForIngestion: 'Enabled'
    publicNetworkAccessForQuery: 'Enabled'
  }
}

@description('Resource id of the Log Analytics workspace (destination of the diagnostic settings).')
output logAnalyticsId string = logAnalytics.id

@description('Name of the Application Insights component.')
output applicationInsightsName string = applicationInsights.name

@description('Resource id of the Application Insights component.')
output applicationInsightsId string = applicationInsights.id

@description('Connection string of the Application Insights component (not a secret: local auth is off).')
output connectionString string = applicationInsights.properties.ConnectionString
