metadata description = 'The user-assigned managed identity of the Function App.'

// One identity for everything the app reaches (storage, Key Vault, Application Insights,
// Microsoft Graph), so that permissions can be granted before the app exists and survive a
// redeploy of the app.

@description('Required. Name of the identity.')
param name string

@description('Required. Region of the identity.')
param location string

@description('Optional. Tags of the identity.')
param tags { *: string } = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

@description('Resource id of the identity.')
output id string = identity.id

@description('Name of the identity.')
output name string = identity.name

@description('Object id of its service principal: what role assignments and the Graph app role name.')
output principalId string = identity.properties.principalId

@description('Client id: what the app passes to get tokens as this identity.')
output clientId string = identity.properties.clientId
