// Virtual network integration with a fixed outbound address: a VNet whose app
// subnet is delegated to Flex Consumption, and a NAT gateway with a static
// public IP on that subnet. Traffic from the app to public addresses (the
// source cluster, the vCore target, Key Vault) then leaves from that one IP,
// which the target's firewall can allow.

@description('Name prefix of the network resources.')
param namePrefix string

@description('Azure region of the network resources.')
param location string

@description('Tags applied to the network resources.')
param tags object = {}

@description('Address space of the virtual network.')
param addressPrefix string = '10.40.0.0/16'

@description('Address range of the app integration subnet. Each app instance takes an address, so size it for maximumInstanceCount.')
param appSubnetPrefix string = '10.40.0.0/24'

@description('Minutes an idle outbound TCP flow stays open on the NAT gateway (4-120). MongoDB drivers keep pooled connections idle between batches, so this is longer than the 4-minute default.')
@minValue(4)
@maxValue(120)
param natIdleTimeoutMinutes int = 10

resource publicIp 'Microsoft.Network/publicIPAddresses@2023-05-01' = {
  name: '${namePrefix}-nat-ip'
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Regional'
  }
  properties: {
    publicIPAddressVersion: 'IPv4'
    publicIPAllocationMethod: 'Static'
  }
}

resource natGateway 'Microsoft.Network/natGateways@2023-05-01' = {
  name: '${namePrefix}-nat'
  location: location
  tags: tags
  sku: {
    name: 'Standard'
  }
  properties: {
    idleTimeoutInMinutes: natIdleTimeoutMinutes
    publicIpAddresses: [
      {
        id: publicIp.id
      }
    ]
  }
}

resource vnet 'Microsoft.Network/virtualNetworks@2023-05-01' = {
  name: '${namePrefix}-vnet'
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
        name: 'app'
        properties: {
          addressPrefix: appSubnetPrefix
          natGateway: {
            id: natGateway.id
          }
          // Flex Consumption apps integrate through subnets delegated to
          // Microsoft.App/environments (the resource provider must be
          // registered in the subscription).
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
    ]
  }
}

output appSubnetId string = vnet.properties.subnets[0].id
output outboundIp string = publicIp.properties.ipAddress
