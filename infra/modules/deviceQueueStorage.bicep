// The storage account of the device queues `dev-<id>`, apart from the host's account. Every
// enrolled device polls its queue (about once a second: ~2.6 M requests per device-month), so a
// fleet of thousands would otherwise take a large share of the request budget of the account that
// Durable Functions and the Functions host depend on (20,000 requests/s per standard account).
// The queues themselves are created at run time by the app, so none are declared here.

param location string
param tags object
param name string

@allowed(['Standard_LRS', 'Standard_ZRS', 'Standard_GRS', 'Standard_RAGRS', 'Standard_GZRS'])
param skuName string = 'Standard_LRS'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    // Shared Key must stay enabled here, and only here: the per-device queue SAS is a service SAS
    // signed with this account's key (Queue storage has no user-delegation SAS), and the app
    // manages the queues and their access policies with the same key (from Key Vault).
    allowSharedKeyAccess: true
    accessTier: 'Hot'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: storage
  name: 'default'
}

output name string = storage.name
output id string = storage.id
output queueEndpoint string = storage.properties.primaryEndpoints.queue
