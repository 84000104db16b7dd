// Log Analytics workspace + workspace-based Application Insights for the function app.
// The workspace is also the destination of the Relay diagnostic logs of every pool namespace
// (see ../pool-subscription.bicep), so one query surface covers the control plane and the relay.

param location string
param tags object
param logAnalyticsName string
param applicationInsightsName string

@description('Days Log Analytics keeps data (30 is included in the PerGB2018 price).')
@minValue(30)
@maxValue(730)
param retentionInDays int = 30

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
  }
}

output workspaceId string = workspace.id
output applicationInsightsName string = appInsights.name
// Not a secret (it carries the ingestion key, which only allows writing telemetry); the app also
// authenticates its telemetry with its managed identity (APPLICATIONINSIGHTS_AUTHENTICATION_STRING).
output applicationInsightsConnectionString string = appInsights.properties.ConnectionString
