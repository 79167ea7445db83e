// Log Analytics workspace and a workspace-based Application Insights resource that accepts
// telemetry only with Entra ID tokens (local auth off). The app authenticates with its
// managed identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING) and holds Monitoring Metrics
// Publisher on the component (rbac.bicep).
param logAnalyticsName string
param applicationInsightsName string
param location string
param tags object = {}
@minValue(30)
param retentionInDays int = 30

// Workspace that stores the Application Insights data; pay-as-you-go, billed per GB ingested
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

// Application Insights with instrumentation-key (local) authentication disabled
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

output logAnalyticsId string = logAnalytics.id
output applicationInsightsName string = applicationInsights.name
output applicationInsightsId string = applicationInsights.id
output connectionString string = applicationInsights.properties.ConnectionString
