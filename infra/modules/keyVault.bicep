// Key Vault dedicated to the app's two secrets: the key of the device queue account, which signs
// device queue SAS (STORAGE_ACCOUNT_KEY), and the key that seals relay keys and tokens at rest (SEALING_KEY).
// The app reads both through Key Vault references with its managed identity (Key Vault Secrets
// User on this vault, granted in appAccess.bicep).

param location string
param tags object
param name string
@description('The device queue account: its key signs device SAS and manages the queues.')
param storageAccountName string

@description('Which storage key is copied into the secret: 0 = key1, 1 = key2. Flip it to rotate (docs/operations.md).')
@allowed([0, 1])
param signingKeyIndex int = 0

@description('Purge protection cannot be turned off once on; keep it on in production.')
param purgeProtection bool = true

@description('Name of the secret holding the storage key.')
param secretName string = 'storage-account-key'

@secure()
@description('SEALING_KEY (base64 of >= 32 random bytes). Give it on the FIRST deployment only; empty leaves the existing secret untouched, because changing it makes sealed data unreadable.')
param sealingKey string = ''

param sealingKeySecretName string = 'sealing-key'

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    // Azure RBAC, not access policies: the app's identity reads this vault, which holds only its secrets.
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 90
    // Key Vault rejects an explicit false; null leaves it off.
    enablePurgeProtection: purgeProtection ? true : null
    publicNetworkAccess: 'Enabled'
  }
}

// listKeys() runs inside this module so the key never travels as a module output.
resource storageKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = {
  parent: vault
  name: secretName
  properties: {
    value: storage.listKeys().keys[signingKeyIndex].value
    contentType: 'storage account key (${storageAccountName}, key${signingKeyIndex + 1})'
  }
}

// Written only when a value is given, so a redeployment without it never replaces the key.
resource sealingKeySecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(sealingKey)) {
  parent: vault
  name: sealingKeySecretName
  properties: {
    value: sealingKey
    contentType: 'relay-broker SEALING_KEY (base64)'
  }
}

output name string = vault.name
output secretName string = storageKeySecret.name
// Versionless URI: the app follows the newest secret version (re-fetched within 24 h or on any
// app configuration change).
output storageKeySecretUri string = storageKeySecret.properties.secretUri
// Built from the vault URI (ends with '/') because the secret may come from an earlier deployment.
output sealingKeySecretUri string = '${vault.properties.vaultUri}secrets/${sealingKeySecretName}'
