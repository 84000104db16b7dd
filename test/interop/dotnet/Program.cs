// A second Hybrid Connections client, in C# on .NET's ClientWebSocket, written from the protocol
// guide and from what Microsoft's .NET client (Azure/azure-relay-dotnet, Microsoft.Azure.Relay) puts
// on the wire: the ServiceBusAuthorization header, sb-hc-action/sb-hc-id, the accept command answered
// by opening its address without a token, binary frames, and the 3.5 min WebSocket keep-alive.
// test/interop/dotnetRelay.test.ts drives it; it reports JSON lines on stdout.
//
//   listen --endpoint URL --hc NAME (--token SAS | --key-name N --key K)
//       echoes every relayed connection; one line per event; ends when stdin closes
//   send --endpoint URL --hc NAME (--token SAS | --key-name N --key K) --bytes N
//       sends N random bytes, reads as many back, reports both SHA-256 digests
//
// TLS trust is the platform's (OpenSSL on Linux): SSL_CERT_FILE names the emulator's CA.
using System.Net;
using System.Net.WebSockets;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

// HybridConnectionConstants.KeepAliveInterval in Microsoft.Azure.Relay: unsolicited pongs, no reply awaited.
var keepAlive = TimeSpan.FromMinutes(3.5);
var opts = ParseArgs(args.Skip(1).ToArray());
var endpoint = new Uri(Required(opts, "endpoint"));
var hc = Required(opts, "hc");
string Token() =>
    opts.TryGetValue("token", out var t)
        ? t
        : CreateSasToken(endpoint, hc, Required(opts, "key-name"), Required(opts, "key"), TimeSpan.FromHours(1));

try
{
    switch (args.FirstOrDefault())
    {
        case "listen":
            await Listen();
            return 0;
        case "send":
            return await Send(long.Parse(Required(opts, "bytes")));
        default:
            Console.Error.WriteLine("usage: listen|send --endpoint URL --hc NAME (--token SAS | --key-name N --key K) [--bytes N]");
            return 2;
    }
}
catch (Exception e)
{
    Report(new JsonObject { ["event"] = "error", ["message"] = e.Message, ["status"] = StatusOf(e) });
    return 1;
}

async Task Listen()
{
    using var control = NewSocket();
    control.Options.SetRequestHeader("ServiceBusAuthorization", Token());
    await Connect(control, HcUri("listen", Guid.NewGuid().ToString()));
    Report(new JsonObject { ["event"] = "online" });
    var connections = new List<Task>();
    // Stdin closing is the test's way to stop the listener.
    var stop = Task.Run(() => Console.In.ReadToEnd());
    var buffer = new byte[64 * 1024];
    Task<string?>? receive = null;
    while (true)
    {
        receive = ReceiveText(control, buffer);
        if (await Task.WhenAny((Task)receive, stop) == stop) break;
        var text = await receive;
        receive = null;
        if (text is null) break;
        var accept = JsonNode.Parse(text)?["accept"];
        if (accept is null) continue; // request (HTTP) and other commands: not used here
        var address = new Uri(accept["address"]!.GetValue<string>());
        var id = accept["id"]!.GetValue<string>();
        connections.Add(Echo(address, id));
    }
    // A receive may still be pending: send our close frame, then let that receive see the answer.
    if (control.State == WebSocketState.Open)
        await control.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "done", CancellationToken.None);
    if (receive != null) await Task.WhenAny(receive, Task.Delay(5000));
    await Task.WhenAll(connections);
    Report(new JsonObject { ["event"] = "stopped" });
}

async Task Echo(Uri address, string id)
{
    try
    {
        // The rendezvous address carries its own authorization: no token, as Microsoft's listener does.
        using var ws = NewSocket();
        await Connect(ws, address);
        Report(new JsonObject { ["event"] = "accepted", ["id"] = id });
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        long bytes = 0;
        var buffer = new byte[64 * 1024];
        while (true)
        {
            var r = await ws.ReceiveAsync(buffer, CancellationToken.None);
            if (r.MessageType == WebSocketMessageType.Close) break;
            sha.AppendData(buffer, 0, r.Count);
            bytes += r.Count;
            await ws.SendAsync(new ArraySegment<byte>(buffer, 0, r.Count), WebSocketMessageType.Binary, true, CancellationToken.None);
        }
        if (ws.State == WebSocketState.CloseReceived)
            await ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "", CancellationToken.None);
        Report(new JsonObject
        {
            ["event"] = "closed",
            ["id"] = id,
            ["bytes"] = bytes,
            ["sha256"] = Convert.ToHexStringLower(sha.GetHashAndReset()),
            ["closeStatus"] = (int?)ws.CloseStatus,
        });
    }
    catch (Exception e)
    {
        Report(new JsonObject { ["event"] = "error", ["id"] = id, ["message"] = e.Message });
    }
}

async Task<int> Send(long total)
{
    using var ws = NewSocket();
    ws.Options.SetRequestHeader("ServiceBusAuthorization", Token());
    await Connect(ws, HcUri("connect", Guid.NewGuid().ToString()));
    using var sent = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    using var received = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    long receivedBytes = 0;
    var reader = Task.Run(async () =>
    {
        var buffer = new byte[64 * 1024];
        while (receivedBytes < total)
        {
            var r = await ws.ReceiveAsync(buffer, CancellationToken.None);
            if (r.MessageType == WebSocketMessageType.Close) break;
            received.AppendData(buffer, 0, r.Count);
            receivedBytes += r.Count;
        }
    });
    var chunk = new byte[48 * 1024 + 7]; // not a power of two: frames and reads do not line up
    for (long left = total; left > 0;)
    {
        var n = (int)Math.Min(chunk.Length, left);
        RandomNumberGenerator.Fill(chunk.AsSpan(0, n));
        sent.AppendData(chunk, 0, n);
        await ws.SendAsync(new ArraySegment<byte>(chunk, 0, n), WebSocketMessageType.Binary, true, CancellationToken.None);
        left -= n;
    }
    await reader;
    await ws.CloseAsync(WebSocketCloseStatus.NormalClosure, "done", CancellationToken.None);
    Report(new JsonObject
    {
        ["event"] = "sent",
        ["sent"] = total,
        ["sentSha256"] = Convert.ToHexStringLower(sent.GetHashAndReset()),
        ["received"] = receivedBytes,
        ["receivedSha256"] = Convert.ToHexStringLower(received.GetHashAndReset()),
    });
    return 0;
}

ClientWebSocket NewSocket()
{
    var ws = new ClientWebSocket();
    ws.Options.KeepAliveInterval = keepAlive;
    ws.Options.CollectHttpResponseDetails = true; // the handshake's HTTP status on refusal
    return ws;
}

// wss://{host}:{port}/$hc/{path}?sb-hc-action=...&sb-hc-id=... (HybridConnectionUtility.BuildUri).
Uri HcUri(string action, string id)
{
    var port = endpoint.IsDefaultPort || endpoint.Port <= 0 ? 443 : endpoint.Port;
    return new Uri($"wss://{endpoint.Host}:{port}/$hc/{Uri.EscapeDataString(hc)}?sb-hc-action={action}&sb-hc-id={Uri.EscapeDataString(id)}");
}

static async Task<string?> ReceiveText(ClientWebSocket ws, byte[] buffer)
{
    using var message = new MemoryStream();
    while (true)
    {
        var r = await ws.ReceiveAsync(buffer, CancellationToken.None);
        if (r.MessageType == WebSocketMessageType.Close) return null;
        message.Write(buffer, 0, r.Count);
        if (r.EndOfMessage) return Encoding.UTF8.GetString(message.ToArray());
    }
}

// SharedAccessSignatureTokenProvider + TokenProvider.NormalizeAudience: http scheme, no port,
// host lower-cased, trailing slash; HMAC-SHA256 keyed with the key text's UTF-8 bytes.
static string CreateSasToken(Uri endpoint, string hc, string keyName, string key, TimeSpan ttl)
{
    var audience = $"http://{endpoint.Host.ToLowerInvariant()}/{hc}/";
    var expiry = DateTimeOffset.UtcNow.Add(ttl).ToUnixTimeSeconds().ToString();
    var sr = WebUtility.UrlEncode(audience);
    using var hmac = new HMACSHA256(Encoding.UTF8.GetBytes(key));
    var sig = Convert.ToBase64String(hmac.ComputeHash(Encoding.UTF8.GetBytes(sr + "\n" + expiry)));
    return $"SharedAccessSignature sr={sr}&sig={WebUtility.UrlEncode(sig)}&se={expiry}&skn={WebUtility.UrlEncode(keyName)}";
}

static int? StatusOf(Exception e) => e is HandshakeException h ? h.Status : null;

static async Task Connect(ClientWebSocket ws, Uri uri)
{
    try
    {
        await ws.ConnectAsync(uri, CancellationToken.None);
    }
    catch (WebSocketException e)
    {
        throw new HandshakeException((int)ws.HttpStatusCode, e.Message, e);
    }
}

static void Report(JsonObject o)
{
    lock (typeof(Console)) Console.Out.WriteLine(o.ToJsonString(new JsonSerializerOptions { WriteIndented = false }));
}

static Dictionary<string, string> ParseArgs(string[] a)
{
    var d = new Dictionary<string, string>();
    for (var i = 0; i + 1 < a.Length; i += 2)
    {
        if (!a[i].StartsWith("--")) throw new ArgumentException($"expected --name value, got {a[i]}");
        d[a[i][2..]] = a[i + 1];
    }
    return d;
}

static string Required(Dictionary<string, string> d, string name) =>
    d.TryGetValue(name, out var v) ? v : throw new ArgumentException($"--{name} is required");

sealed class HandshakeException(int status, string message, Exception inner) : Exception(message, inner)
{
    public int Status => status;
}
