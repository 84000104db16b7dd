// relay-broker control plane: Flex Consumption function app (Linux, Node) with a system-assigned
// managed identity, its storage account (identity-based AzureWebJobsStorage, no shared key), the
// domain tables, a second storage account for the device queues, a Key Vault holding that account's
// key (it signs device queue SAS) and the SEALING_KEY, Application Insights + Log Analytics, and
// every app setting that lib/config.ts marks `azure: 'required'`.
//
// Deploy:  az deployment group create -g <rg> -f infra/main.bicep -p @<filled parameters file>
//          (or `azd up`); then infra/pool-subscription.bicep once per pool subscription.
// Compiled and linted by scripts/bicep.sh (the real Bicep CLI from NuGet) in .ci/run; the compiled
// ARM JSON is committed as infra/main.json and read by test/unit/infra/settings.test.ts.

targetScope = 'resourceGroup'

// ---------------------------------------------------------------------------------------------
// Deployment shape
// ---------------------------------------------------------------------------------------------

@minLength(1)
@maxLength(64)
@description('Environment name (azd: AZURE_ENV_NAME). Seeds the generated resource names and the azd-env-name tag.')
param environmentName string

@description('Region of every resource. Must offer Flex Consumption: `az functionapp list-flexconsumption-locations`.')
param location string = resourceGroup().location

@description('Function app name (a DNS label, globally unique). Empty: func-rbk-<hash>.')
param appName string = ''

@description('Node.js major version of the app. 22 is GA on Functions (supported until 30 Apr 2027) and what CI tests; 24 was in public preview on Functions when this was written (Nov 2025 announcement). Node 20 reached end of support on 30 Apr 2026.')
@allowed(['22', '24'])
param nodeVersion string = '22'

@allowed([512, 2048, 4096])
@description('Memory per instance; Flex bills GB-seconds, so this multiplies the compute cost.')
param instanceMemoryMB int = 2048

@minValue(40)
@maxValue(1000)
@description('Upper bound on instances: the ceiling of the Functions bill under load.')
param maximumInstanceCount int = 100

@minValue(0)
@description('HTTP instances kept warm (billed idle at the always-ready rate). 1 removes the cold start (seconds) from the first POST /sessions of a quiet period; 2 or more shorten the scale-out of a burst. See docs/capacity.md.')
param alwaysReadyHttpInstances int = 1

@minValue(0)
@description('Durable Functions instances kept warm: 1, as Microsoft advises for Durable Functions on Flex, so the session orchestration\'s first episode does not wait for a cold host. See docs/capacity.md.')
param alwaysReadyDurableInstances int = 1

@minValue(0)
@maxValue(1000)
@description('Concurrent HTTP invocations per instance; 0 keeps the platform default (set by instance memory). An open holds its request up to 8 s mostly waiting, so a higher value means fewer instances for a burst. See docs/capacity.md.')
param httpPerInstanceConcurrency int = 0

@allowed(['Standard_LRS', 'Standard_ZRS', 'Standard_GRS', 'Standard_RAGRS', 'Standard_GZRS'])
param storageSku string = 'Standard_LRS'

@allowed(['Standard_LRS', 'Standard_ZRS', 'Standard_GRS', 'Standard_RAGRS', 'Standard_GZRS'])
@description('Redundancy of the device queue account. Queue messages are short-lived session notices; LRS is enough.')
param deviceQueueStorageSku string = 'Standard_LRS'

@description('Domain tables created up front (the app also creates missing ones). Must match the table names in lib/.')
param tableNames array = [
  'namespaces'
  'sessions'
  'devices'
  'grants'
  'deletednames'
]

@allowed([0, 1])
@description('Key of the device queue account copied into Key Vault for signing device SAS: 0 = key1, 1 = key2 (rotation: docs/operations.md).')
param signingKeyIndex int = 0

param keyVaultPurgeProtection bool = true

@secure()
@description('SEALING_KEY, base64 of >= 32 random bytes (openssl rand -base64 32). FIRST deployment only: it is stored in Key Vault; leave empty afterwards (empty never overwrites it).')
param sealingKey string = ''

@minValue(30)
@maxValue(730)
param logRetentionDays int = 30

// ---------------------------------------------------------------------------------------------
// Settings of the app (names and meaning: lib/config.ts SETTINGS)
// Optional tuning parameters are text; an empty value means "the default built into the code".
// ---------------------------------------------------------------------------------------------

@description('PUBLIC_API_URL override (custom domain), e.g. https://relay.example.com/api. Empty: https://<default host>/api.')
param publicApiUrl string = ''

@description('POOL_NAME: partition key of the namespaces table and tag value on pool namespaces.')
param poolName string = 'default'

@description('POOL_SUBSCRIPTIONS: [{subscriptionId, resourceGroup, location, quota}], one entry per pool subscription (deploy pool-subscription.bicep to each).')
param poolSubscriptions array

@description('POOL_NAMESPACE_PREFIX: prefix of generated namespace names (a letter, then 2-20 of a-z 0-9 -).')
param poolNamespacePrefix string = 'rbk'

@description('POOL_FLOOR: namespaces kept available whatever the load (idle namespaces cost nothing).')
@minValue(0)
param poolFloor int = 5

@description('POOL_CAP: global cap on namespaces = cap on concurrent sessions = cap on listener-hours per hour.')
@minValue(1)
param poolCap int = 600

@description('POOL_HOUR_PROFILE: 24 expected concurrent sessions per UTC hour; [] = none.')
param poolHourProfile array = []

@description('POOL_HEADROOM (e.g. "1.25"); empty = code default.')
param poolHeadroom string = ''

@description('POOL_CREATE_SECONDS; empty = code default (45).')
param poolCreateSeconds string = ''

@description('POOL_STUCK_MINUTES; empty = code default (30).')
param poolStuckMinutes string = ''

@description('POOL_MAX_RECYCLE_FAILURES; empty = code default (3).')
param poolMaxRecycleFailures string = ''

@description('POOL_SHRINK_IDLE_MINUTES; empty = code default (30).')
param poolShrinkIdleMinutes string = ''

@description('POOL_NAME_REUSE_HOURS; empty = code default (24).')
param poolNameReuseHours string = ''

@description('RELAY_ARM_ENDPOINT; empty = https://management.azure.com. Set for sovereign clouds.')
param relayArmEndpoint string = ''

@description('SESSION_OPEN_BUDGET_MS; empty = code default (8000).')
param sessionOpenBudgetMs string = ''

@description('SESSION_READY_TIMEOUT_MS; empty = code default (7000).')
param sessionReadyTimeoutMs string = ''

@description('SESSION_DEFAULT_LIFETIME_MINUTES; empty = code default (60).')
param sessionDefaultLifetimeMinutes string = ''

@description('SESSION_MAX_LIFETIME_MINUTES: bounds the listener-hours one session can bill; empty = code default (720).')
param sessionMaxLifetimeMinutes string = ''

@description('SESSION_RATE_LIMIT_PER_MINUTE; empty = code default (30).')
param sessionRateLimitPerMinute string = ''

@description('DEVICE_SAS_DAYS; empty = code default (365).')
param deviceSasDays string = ''

@allowed(['entra', 'appservice'])
@description('AUTH_MODE: entra validates bearer JWTs itself; appservice trusts App Service Authentication (configure it separately).')
param authMode string = 'entra'

@description('Entra tenant of the API app registration.')
param authTenantId string = tenant().tenantId

@description('AUTH_AUDIENCE: the API app registration\'s client id (v2 access tokens carry it as aud).')
param authAudience string

@description('AUTH_ISSUER override; empty = <login endpoint><tenant>/v2.0.')
param authIssuer string = ''

@description('AUTH_JWKS_URL override; empty = <login endpoint><tenant>/discovery/v2.0/keys.')
param authJwksUrl string = ''

// ---------------------------------------------------------------------------------------------
// Resources
// ---------------------------------------------------------------------------------------------

var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName))
var tags = {
  'azd-env-name': environmentName
  application: 'relay-broker'
}
var functionAppName = empty(appName) ? 'func-rbk-${resourceToken}' : appName
var deploymentContainerName = 'app-package'

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    tags: tags
    logAnalyticsName: 'log-rbk-${resourceToken}'
    applicationInsightsName: 'appi-rbk-${resourceToken}'
    retentionInDays: logRetentionDays
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    location: location
    tags: tags
    name: 'strbk${resourceToken}'
    skuName: storageSku
    deploymentContainerName: deploymentContainerName
    tableNames: tableNames
  }
}

module deviceQueues 'modules/deviceQueueStorage.bicep' = {
  name: 'deviceQueueStorage'
  params: {
    location: location
    tags: tags
    name: 'stqrbk${resourceToken}'
    skuName: deviceQueueStorageSku
  }
}

module keyVault 'modules/keyVault.bicep' = {
  name: 'keyVault'
  params: {
    location: location
    tags: tags
    name: 'kv-rbk-${resourceToken}'
    storageAccountName: deviceQueues.outputs.name
    signingKeyIndex: signingKeyIndex
    purgeProtection: keyVaultPurgeProtection
    sealingKey: sealingKey
  }
}

module functionApp 'modules/functionApp.bicep' = {
  name: 'functionApp'
  params: {
    location: location
    tags: tags
    planName: 'plan-rbk-${resourceToken}'
    appName: functionAppName
    deploymentContainerUrl: storage.outputs.deploymentContainerUrl
    nodeVersion: nodeVersion
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    alwaysReadyHttpInstances: alwaysReadyHttpInstances
    alwaysReadyDurableInstances: alwaysReadyDurableInstances
    httpPerInstanceConcurrency: httpPerInstanceConcurrency
  }
}

module appAccess 'modules/appAccess.bicep' = {
  name: 'appAccess'
  params: {
    principalId: functionApp.outputs.principalId
    storageAccountName: storage.outputs.name
    keyVaultName: keyVault.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
  }
}

var loginEndpoint = environment().authentication.loginEndpoint // ends with '/'
var storageSuffix = environment().suffixes.storage

// Every app setting of the function app, written whole by appSettings.bicep.
// test/unit/infra/settings.test.ts reads this object from the compiled infra/main.json (the
// `settings` parameter of the appSettings deployment) and fails when a setting that lib/config.ts
// marks azure: 'required' is missing, or when a name is neither in SETTINGS nor on the test's
// platform allow-list. Values are always strings; an empty string means "unset" to lib/config.ts
// (the code default applies).
var appSettings = {
  // Platform (Flex Consumption takes runtime and version from functionAppConfig, and rejects
  // FUNCTIONS_WORKER_RUNTIME / FUNCTIONS_EXTENSION_VERSION as app settings).
  APPLICATIONINSIGHTS_CONNECTION_STRING: monitoring.outputs.applicationInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD'
  AzureWebJobsStorage__accountName: storage.outputs.name
  // relay-broker (lib/config.ts)
  RELAY_BROKER_MODE: 'azure'
  STORAGE_TABLE_ENDPOINT: 'https://${storage.outputs.name}.table.${storageSuffix}'
  DEVICE_QUEUE_ACCOUNT_NAME: deviceQueues.outputs.name
  STORAGE_QUEUE_ENDPOINT: 'https://${deviceQueues.outputs.name}.queue.${storageSuffix}'
  STORAGE_ACCOUNT_KEY: '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.storageKeySecretUri})'
  SEALING_KEY: '@Microsoft.KeyVault(SecretUri=${keyVault.outputs.sealingKeySecretUri})'
  PUBLIC_API_URL: empty(publicApiUrl) ? 'https://${functionApp.outputs.defaultHostName}/api' : publicApiUrl
  POOL_NAME: poolName
  POOL_SUBSCRIPTIONS: string(poolSubscriptions)
  POOL_NAMESPACE_PREFIX: poolNamespacePrefix
  POOL_FLOOR: string(poolFloor)
  POOL_CAP: string(poolCap)
  POOL_HOUR_PROFILE: empty(poolHourProfile) ? '' : string(poolHourProfile)
  POOL_HEADROOM: poolHeadroom
  POOL_CREATE_SECONDS: poolCreateSeconds
  POOL_STUCK_MINUTES: poolStuckMinutes
  POOL_MAX_RECYCLE_FAILURES: poolMaxRecycleFailures
  POOL_SHRINK_IDLE_MINUTES: poolShrinkIdleMinutes
  POOL_NAME_REUSE_HOURS: poolNameReuseHours
  RELAY_ARM_ENDPOINT: relayArmEndpoint
  SESSION_OPEN_BUDGET_MS: sessionOpenBudgetMs
  SESSION_READY_TIMEOUT_MS: sessionReadyTimeoutMs
  SESSION_DEFAULT_LIFETIME_MINUTES: sessionDefaultLifetimeMinutes
  SESSION_MAX_LIFETIME_MINUTES: sessionMaxLifetimeMinutes
  SESSION_RATE_LIMIT_PER_MINUTE: sessionRateLimitPerMinute
  DEVICE_SAS_DAYS: deviceSasDays
  AUTH_MODE: authMode
  AUTH_ISSUER: empty(authIssuer) ? '${loginEndpoint}${authTenantId}/v2.0' : authIssuer
  AUTH_AUDIENCE: authAudience
  AUTH_JWKS_URL: empty(authJwksUrl) ? '${loginEndpoint}${authTenantId}/discovery/v2.0/keys' : authJwksUrl
}

module settings 'modules/appSettings.bicep' = {
  name: 'appSettings'
  params: {
    appName: functionApp.outputs.name
    settings: appSettings
  }
  // The identity must hold its roles before the app resolves the Key Vault reference and opens
  // storage; writing the settings restarts the app.
  dependsOn: [
    appAccess
  ]
}

// ---------------------------------------------------------------------------------------------
// Outputs (azd stores them in the environment; docs/deploy.md uses them)
// ---------------------------------------------------------------------------------------------

output appName string = functionApp.outputs.name
output hostname string = functionApp.outputs.defaultHostName
output principalId string = functionApp.outputs.principalId
output apiUrl string = empty(publicApiUrl) ? 'https://${functionApp.outputs.defaultHostName}/api' : publicApiUrl
output storageAccountName string = storage.outputs.name
output deviceQueueAccountName string = deviceQueues.outputs.name
output keyVaultName string = keyVault.outputs.name
output logAnalyticsWorkspaceId string = monitoring.outputs.workspaceId
