metadata description = 'The private network of a vnetEnabled deployment: a virtual network with a subnet delegated to Flex Consumption (Microsoft.App/environments) for the app\'s VNet integration and a subnet for private endpoints; a private endpoint per storage service and Key Vault, each with its private DNS zone (named from environment(), so national clouds get theirs) linked to the network, and a DNS zone group that keeps the endpoint\'s A record in that zone.'

// Nothing here is reachable from the internet: the subnets hold the app's outbound interface and
// the private endpoints. Inbound, the Function App itself stays public (Microsoft Graph delivers
// to its webhooks from the internet; docs/networking.md).

@description('Required. Name of the virtual network.')
param name string

@description('Required. Region of the network and the private endpoints.')
param location string

@description('Optional. Tags of every resource in this module.')
param tags { *: string } = {}

@description('Optional. Address space of the virtual network; choose one that does not overlap networks you will peer it with.')
param addressPrefix string = '10.0.0.0/16'

@description('Optional. Subnet of the Function App\'s VNet integration, delegated to Microsoft.App/environments (Flex Consumption). Each instance takes an address, so it bounds the scale-out.')
param appSubnetPrefix string = '10.0.1.0/24'

@description('Optional. Subnet of the private endpoints (one address each).')
param privateEndpointSubnetPrefix string = '10.0.2.0/24'

@description('Required. The private endpoints: a name, the resource and the sub-resource (group id) it exposes.')
param privateEndpoints privateEndpointType[]

var appSubnetName = 'app'
var privateEndpointSubnetName = 'private-endpoints'

// The private DNS zone of each sub-resource (learn.microsoft.com/azure/private-link/
// private-endpoint-dns): built from environment() so that the US Government and China clouds get
// theirs (privatelink.blob.core.usgovcloudapi.net, privatelink.vaultcore.usgovcloudapi.net, ...).
// Key Vault's zone is the vault suffix with vault -> vaultcore.
var privateDnsZoneNames = {
  blob: 'privatelink.blob.${environment().suffixes.storage}'
  queue: 'privatelink.queue.${environment().suffixes.storage}'
  table: 'privatelink.table.${environment().suffixes.storage}'
  vault: 'privatelink${replace(environment().suffixes.keyvaultDns, '.vault.', '.vaultcore.')}'
}
var groupIds = [
  'blob'
  'queue'
  'table'
  'vault'
]

// No rules of their own: the defaults admit traffic within the network and refuse inbound from
// the internet
resource appSubnetNsg 'Microsoft.Network/networkSecurityGroups@2023-11-01' = {
  name: '${name}-${appSubnetName}-nsg'
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

resource privateEndpointSubnetNsg 'Microsoft.Network/networkSecurityGroups@2023-11-01' = {
  name: '${name}-${privateEndpointSubnetName}-nsg'
  location: location
  tags: tags
  properties: {
    securityRules: []
  }
}

resource vnet 'Microsoft.Network/virtualNetworks@2023-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        addressPrefix
      ]
    }
    subnets: [
      {
        name: appSubnetName
        properties: {
          addressPrefix: appSubnetPrefix
          // The app still calls Microsoft Graph and Entra ID on the internet from this subnet.
          // Written out because Azure is retiring implicit outbound access for new subnets
          // (learn.microsoft.com/azure/virtual-network/ip-services/default-outbound-access); to
          // control egress, attach a NAT gateway or route through a firewall instead.
          defaultOutboundAccess: true
          networkSecurityGroup: {
            id: appSubnetNsg.id
          }
          // Flex Consumption integrates with a subnet delegated to Microsoft.App/environments
          // (learn.microsoft.com/azure/azure-functions/flex-consumption-plan#virtual-network-integration)
          delegations: [
            {
              name: 'flex-consumption'
              properties: {
                serviceName: 'Microsoft.App/environments'
              }
            }
          ]
        }
      }
      {
        name: privateEndpointSubnetName
        properties: {
          addressPrefix: privateEndpointSubnetPrefix
          networkSecurityGroup: {
            id: privateEndpointSubnetNsg.id
          }
          privateEndpointNetworkPolicies: 'Disabled'
        }
      }
    ]
  }
}

resource appSubnet 'Microsoft.Network/virtualNetworks/subnets@2023-11-01' existing = {
  parent: vnet
  name: appSubnetName
}

resource privateEndpointSubnet 'Microsoft.Network/virtualNetworks/subnets@2023-11-01' existing = {
  parent: vnet
  name: privateEndpointSubnetName
}

resource privateDnsZones 'Microsoft.Network/privateDnsZones@2020-06-01' = [
  for groupId in groupIds: {
    name: privateDnsZoneNames[groupId]
    location: 'global'
    tags: tags
  }
]

// The zones answer only inside this network; outside it the public names still resolve to the
// public endpoints, which refuse the connection
resource privateDnsZoneLinks 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2020-06-01' = [
  for (groupId, i) in groupIds: {
    parent: privateDnsZones[i]
    name: '${name}-link'
    location: 'global'
    tags: tags
    properties: {
      registrationEnabled: false
      virtualNetwork: {
        id: vnet.id
      }
    }
  }
]

resource endpoints 'Microsoft.Network/privateEndpoints@2023-11-01' = [
  for endpoint in privateEndpoints: {
    name: 'pe-${endpoint.name}'
    location: location
    tags: tags
    properties: {
      subnet: {
        id: privateEndpointSubnet.id
      }
      privateLinkServiceConnections: [
        {
          name: endpoint.name
          properties: {
            privateLinkServiceId: endpoint.resourceId
            groupIds: [
              endpoint.groupId
            ]
          }
        }
      ]
    }
  }
]

// The zone group writes (and removes) the endpoint's A record in the zone of its group id
resource dnsZoneGroups 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2023-11-01' = [
  for (endpoint, i) in privateEndpoints: {
    parent: endpoints[i]
    name: 'default'
    properties: {
      privateDnsZoneConfigs: [
        {
          name: endpoint.groupId
          properties: {
            privateDnsZoneId: resourceId('Microsoft.Network/privateDnsZones', privateDnsZoneNames[endpoint.groupId])
          }
        }
      ]
    }
    dependsOn: [
      privateDnsZones
      privateDnsZoneLinks
    ]
  }
]

@description('Resource id of the virtual network.')
output id string = vnet.id

@description('Resource id of the subnet the Function App integrates with (delegated to Microsoft.App/environments).')
output appSubnetId string = appSubnet.id

@description('Resource id of the private-endpoint subnet.')
output privateEndpointSubnetId string = privateEndpointSubnet.id

// =============== //
//   Definitions   //
// =============== //

@export()
@description('A private endpoint. Fields: name (the endpoint is pe-<name>); resourceId (the storage account or vault); groupId (the sub-resource: blob, queue, table or vault), which also picks its private DNS zone.')
type privateEndpointType = {
  name: string
  resourceId: string
  groupId: privateLinkGroupType
}

@export()
@description('A private-link sub-resource (group id) this deployment exposes.')
type privateLinkGroupType = 'blob' | 'queue' | 'table' | 'vault'
