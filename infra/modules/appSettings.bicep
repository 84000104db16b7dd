// Writes the complete app settings of the function app in one PUT (replacing what was there), so
// a setting removed from main.bicep disappears from the app on the next deployment.

param appName string

@description('Every app setting, name -> string value (built in main.bicep between the app-settings markers).')
param settings object

resource site 'Microsoft.Web/sites@2024-04-01' existing = {
  name: appName
}

resource appSettings 'Microsoft.Web/sites/config@2024-04-01' = {
  parent: site
  name: 'appsettings'
  properties: settings
}
