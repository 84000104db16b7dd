// Flex Consumption plan + Linux function app (Node) with a system-assigned managed identity.
// App settings are NOT set here: appSettings.bicep writes them after the identity has its roles,
// so the Key Vault reference and identity-based storage resolve on the first start.
//
// Consumption (Y1) alternative: see docs/deploy.md, "Consumption plan instead of Flex".

param location string
param tags object
param planName string
param appName string

@description('Blob container URL (https://<account>.blob.core.windows.net/<container>) for deployment packages.')
param deploymentContainerUrl string

@description('Node.js major version (functionAppConfig.runtime.version). See main.bicep.')
@allowed(['22', '24'])
param nodeVersion string = '22'

@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Instances kept warm for HTTP triggers (billed while idle; removes cold starts from POST /sessions).')
@minValue(0)
param alwaysReadyHttpInstances int = 0

@description('Instances kept warm for Durable Functions (orchestrations and activities).')
@minValue(0)
param alwaysReadyDurableInstances int = 0

@description('Concurrent HTTP invocations per instance; 0 keeps the platform default (set by instance memory).')
@minValue(0)
@maxValue(1000)
param httpPerInstanceConcurrency int = 0

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true // Linux
  }
}

// Multi-line literals only (no single-line comma syntax) so older Bicep CLIs compile this too.
var alwaysReadyGroups = [
  {
    name: 'http'
    instanceCount: alwaysReadyHttpInstances
  }
  {
    name: 'durable'
    instanceCount: alwaysReadyDurableInstances
  }
]
var alwaysReady = filter(alwaysReadyGroups, group => group.instanceCount > 0)

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: appName
  location: location
  // azd finds the app to deploy service `api` (azure.yaml) by this tag.
  tags: union(tags, { 'azd-service-name': 'api' })
  kind: 'functionapp,linux'
  identity: {
    type: 'SystemAssigned'
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      // No appSettings here: a PUT of the site with a partial list would replace the full set
      // written by appSettings.bicep on every redeploy.
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: deploymentContainerUrl
          authentication: {
            type: 'SystemAssignedIdentity'
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
        alwaysReady: alwaysReady
        triggers: httpPerInstanceConcurrency > 0 ? { http: { perInstanceConcurrency: httpPerInstanceConcurrency } } : null
      }
      runtime: {
        name: 'node'
        version: nodeVersion
      }
    }
  }
}

output name string = site.name
output id string = site.id
output defaultHostName string = site.properties.defaultHostName
output principalId string = site.identity.principalId
