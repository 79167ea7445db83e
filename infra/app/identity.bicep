// User-assigned managed identity of the Function App. One identity for everything the app
// reaches (storage, Key Vault, Application Insights, Microsoft Graph), so that permissions
// can be granted before the app exists and survive a redeploy of the app.
param name string
param location string
param tags object = {}

// The identity itself; its service principal receives the roles in rbac.bicep and graph-app-role.bicep
resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
