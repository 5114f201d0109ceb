// Package emulator is a local Azure IoT Hub: it serves the service REST API (api-version 2021-04-12) that
// rollout and the official service SDKs speak, over plain HTTP for in-process tests or HTTPS with a CA it
// generates, so that every plan can be rehearsed and every test run without a cloud account.
//
// It keeps a device registry and twins (tags, desired and reported properties with etags, versions and
// $metadata), answers twin queries through the query package with stored cursors for paging, runs jobs v2
// (scheduled twin updates and direct methods) paced by the emulated tier's job device operations per
// second, and simulates devices from a fleet file: which are offline, how they answer direct methods, and
// whether they report desired values back. Quotas of the chosen tier are enforced with the hub's 429s, a
// seeded share of requests can be made to fail, and /_emulator/ endpoints outside IoT Hub's paths expose
// per-device invocation counts, a job timeline and quota use.
//
// Behaviour is deterministic for a fleet file and seed: which devices are offline or failing is decided by
// a hash of the device id and the seed, never by a random draw at run time. In a generated group a share
// selects exactly round(share × count) devices. With behavior onlineAfter, the devices that start offline
// (their share, or connectionState: Disconnected) come online that long after the emulator starts or
// loads its data file: Connected from then on, answering methods, and reporting back the desired
// properties changed while they were away. Devices taken over by a client are left to it.
//
// # Use
//
// In-process (tests, `rollout apply --emulate`): Start with Options, then connect any client to
// ConnectionString (HostName=127.0.0.1:PORT) over URL; Close stops it. From the command line:
//
//	rollout emulator --fleet fleet.yaml --listen 127.0.0.1:8443 --tier S1
//
// prints IOTHUB_CONNECTION_STRING, SSL_CERT_FILE and NODE_EXTRA_CA_CERTS lines. The official Node service
// SDK always connects to port 443, so it needs --listen 127.0.0.1:443 (the connection string then names
// HostName=localhost) and NODE_EXTRA_CA_CERTS. The development policy (DevelopmentPolicyName,
// DevelopmentPolicyKey) is public, like Azurite's well-known account; override it for anything shared.
//
// # Layout
//
// The files follow the flow of a request. server.go starts and stops a Server (defaults, the stores'
// state, listen, serve); http.go is the middleware every IoT Hub request passes (tier headers, faults,
// authentication, logging) and the router, which picks a handler and charges its quota. The handlers are
// the HTTP I/O and nothing else, a file per resource: devices_http.go, modules_http.go, twins_http.go,
// configs_http.go, methods_http.go, jobs_http.go, query_http.go, statistics.go, with paging in cursor.go and the /_emulator/ endpoints in
// stats.go; they decode a request, call one store method and write the answer, and none takes a lock.
// State lives in stores that take their own locks: the registry and twins (store.go, device.go,
// registry.go, module.go, configs.go, twinwrite.go) and the jobs (jobs.go); their methods are the transitions, a twin write or
// a job moving from queued to running (jobstate.go), and the decisions they rest on (an etag match, the
// concurrent-job limit, twin sizes in twin.go) are plain functions of the state. The job runner
// (jobrunner.go) does the waiting and pacing of each job on its own goroutine and moves it on only
// through the job store; when a twin job's batch is written, the store records the rows while its lock
// is held, so the lock order is always the registry's before the jobs'. The simulated devices are the
// converger (converge.go), which reports desired values back, and methods.go, which answers direct
// methods; both change twins only through the store. The data file (snapshot.go) reads and writes the
// stores through their methods as well.
//
// The device side follows the same split. device_mqtt.go is the only file that knows the MQTT server
// library (device_ws.go hands it WebSocket connections): it frames packets and turns each into a call on the store (external.go: connecting, twin
// GET, reported patches) or on the registry of live connections (deviceconn.go: subscriptions, the
// direct-method calls awaiting an answer, each connection's outgoing queue), which takes its own lock.
// The store hands desired changes to that registry with its own lock held, so the lock order is the
// store's before the connections'; messages are only queued under it and written by each connection's
// own goroutine. What the topics and usernames mean is in internal/iotmqtt, pure and fuzzed.
//
// # The device side
//
// With Options.MQTTAddr (the CLI's --mqtt-listen, default 127.0.0.1:8883) devices connect over MQTT
// 3.1.1 with TLS and the generated certificate, and over MQTT over WebSockets at /$iothub/websocket on
// the REST listener (subprotocol mqtt in any case, echoed as sent), as to IoT Hub: client id {deviceId}, username
// {host}/{deviceId}/?api-version=..., password a SAS token signed with a key GET /devices/{id}
// returns. In-process emulators (tests, apply --emulate) open no MQTT port unless asked. The first
// client that connects as a fleet device takes it over for the rest of the run: it is never simulated
// again, is Connected only while a client is, reports only what its client sends, and gets every
// desired change (REST PATCH or PUT, twin job) pushed with its $version. Direct methods from REST
// and from jobs reach it and carry its real status and payload back. Fleet devices with behavior
// driver: external wait for their client from the start. Telemetry is accepted (PUBACK) and counted
// in /_emulator/stats; /_emulator/connections lists live connections and why the last one of each
// device ended.
//
// # The tier in every response
//
// Every response, errors and /_emulator/ endpoints included, states the emulated tier in two headers a
// real IoT Hub never sends, so that a client paces itself to the emulator without flags:
//
//	X-Emulator-Tier: S3        (hubapi.HeaderEmulatorTier: F1, S1, S2, S3 or unlimited)
//	X-Emulator-Units: 10       (hubapi.HeaderEmulatorUnits: purchased units; 1 for unlimited)
//
// hubapi's Client.Probe reads them. GET /statistics/devices and GET /statistics/service are served as
// the swagger defines them (RegistryStatistics, ServiceStatistics) and charged to no quota, so a first
// contact never provokes a 429.
//
// # Choices where the hub's behaviour is undocumented
//
// The reference marks these unconfirmed; the emulator chooses, and rollout's engine is tested against
// the choice:
//   - Errors use body shape A ({"Message":"ErrorCode:<Name>;<text>","ExceptionMessage":"Tracking ID:..."})
//     with the iothub-errorcode header, for every code. 429s carry Retry-After: the seconds until the
//     quota has room again (at least 1).
//   - A duplicate job id is 409 JobAlreadyExists; cancelling a running or finished job is
//     400 InvalidOperation; an oversized job condition is 412 PreconditionFailed (as observed), an
//     oversized or unparsable query is 400 ArgumentInvalid.
//   - Queued and scheduled jobs count towards the concurrent-job limit, as running ones do.
//   - A job selects its devices once, when it starts running. A direct method on an offline device fails
//     after connectTimeoutInSeconds (0 by default: at once) with DeviceNotOnline, in jobs too; devices not
//     reached before maxExecutionTimeInSeconds fail with the error code JobExecutionTimeout, and the job
//     ends completed. A device that answers a method with any status completes; its status is in the
//     row's outcome.
//   - Rate quotas accept a burst of ten seconds' worth of requests before answering 429, a stand-in for
//     the hub's traffic shaping. Job device operations are paced at the tier's rate, never refused,
//     with at most a tenth of a second's worth in hand, so no job beats count ÷ rate.
//   - Twin values may be arrays. Sizes count keys and values as the quotas page describes; tags over
//     8 KB, desired over 32 KB, values over 4 KB, keys with '.', '$', spaces or control characters, depth
//     over 10 and integers beyond ±2^52 are 400 ArgumentInvalid. Bodies over 1 MiB and method payloads
//     over 128 KB are 413 MessageTooLarge.
//   - A twin's version and etag change with its tags and desired properties (as the reference verified),
//     not when a simulated device reports; reported changes move properties.reported.$version.
//   - $metadata keeps one $lastUpdated/$lastUpdatedVersion per top-level property; nested properties
//     show their top-level entry.
//   - Module identities (a fleet device's modules:, or PUT /devices/{id}/modules/{mid}) are simulated
//     as their device is (online, answering methods and reporting desired values back as its
//     behaviour and shares say) until a client connects as the module. A module has keys of its own;
//     its twin has no capabilities; deleting a device deletes its modules and disabling it refuses
//     their connections. A module created again is 409 ModuleAlreadyExistsOnDevice. Module queries
//     (FROM devices.modules) see module twins as they are, without the query lag; jobs select
//     devices only, as on the hub. A path segment holding an escaped '/' is 400 ArgumentInvalid.
//   - Automatic device configurations (/configurations, or a fleet file's configurations:, created in
//     their order) run once when created or updated and then every Options.ConfigurationInterval
//     (5 minutes, the hub's interval). Each run writes deviceContent (paths properties.desired.*) to
//     the device twins the target condition selects: per path, the highest priority wins, then the
//     latest created, then the smallest id; a path inside or around one a winner writes is left to
//     the winner. A twin is written only where it does not hold the winning value already, and a
//     value someone else wrote at such a path is written back at the next run. Deleting a
//     configuration leaves the twins as they are; its content cannot be updated (400). A
//     configuration is applied to a twin when it wins a path there (systemMetrics appliedCount) and
//     targets it otherwise; twins carry no configurations field, so appliedCount's query is not
//     answerable. modulesContent and moduleContent are kept and returned, not applied. Unknown and
//     duplicate ids are 404 ConfigurationNotFound and 409 ConfigurationAlreadyExists, a hub holds at
//     most 100 configurations (403 IotHubQuotaExceeded), and configuration calls are charged to
//     registry operations.
//   - Job records are kept until the emulator's data is discarded (the hub's 30-day retention is not
//     emulated).
//
// On the device side (MQTT):
//   - A module connects with client id {deviceId}/{moduleId}, username
//     {host}/{deviceId}/{moduleId}/?api-version=... and a token signed with the module's key for
//     {host}/devices/{deviceId}/modules/{moduleId} (or by the policy for a prefix of it); it gets its
//     own twin's GET, reported patches and desired pushes, and module methods, on the device topics,
//     and sends telemetry on devices/{deviceId}/modules/{moduleId}/messages/events/.
//   - A bad, expired or unknown token, an unknown or disabled device or module and a client id that
//     is not the username's identity all get CONNACK 5 (the username's host is not checked:
//     the token's sr is, against the hosts and ports the emulator answers to); protocol levels other than 4 (3.1.1)
//     get CONNACK 1. A CONNECT not completed within 30 s closes the connection. A connection is
//     closed when its token expires (plus the five minutes of clock skew tokens are allowed).
//   - A QoS 2 publish, a publish to a topic the hub does not serve (including telemetry for another
//     device), a subscription outside $iothub/twin/res/#, $iothub/twin/PATCH/properties/desired/#,
//     $iothub/methods/POST/# and devices/{id}/messages/devicebound/#, a sixth subscription and a
//     packet over 256 KB (plus 4 KB for topic and properties) close the connection. QoS 2
//     subscriptions are granted QoS 1; retained messages are not kept.
//   - Twin errors are answered on $iothub/twin/res/{status}/ with the JSON body
//     {"errorCode":400004,"trackingId":...,"message":...,"info":{},"timestampUtc":...}; a reported
//     patch that is not a JSON object is 400 ArgumentInvalid, and the REST side's twin limits apply.
//     Twin GET is charged to the twin-read quota and reported patches to twin updates (429 on the
//     same topic). A reported patch changes properties.reported.$version, not the twin's version.
//   - A replaced (PUT) desired section is pushed as a patch: the new properties and null for each
//     one removed. Desired changes made while the device is away are not queued, as on the hub.
//   - A connected device that has not subscribed to $iothub/methods/POST/# is not online for
//     methods (404103 after connectTimeoutInSeconds). A device that disconnects during a call fails
//     it at once with 404103 "Device unavailable". An answer that is not JSON or is over 128 KB is
//     dropped (noted on /_emulator/connections) and the call ends 504101 at its response timeout.
//     Method requests carry the payload, or null, never an empty body (the Node SDK answers an
//     empty one 400 itself), and $rid is a decimal counter that is never reused.
//   - A method call to a real device under way when the emulator closes leaves its job row pending,
//     so a job resumed from the data file calls the device again: such methods are at least once
//     across a restart. A device taken over stays external across a restart, Disconnected until its
//     client connects again.
//   - A clean-session=0 reconnect keeps the device's subscriptions, as the hub does; a new connection
//     for a device drops the old one. Deleting or disabling a device closes its connection. A
//     keep-alive of 0 or over 1177 s is taken as 1177 s, so silence closes a connection after 1765 s.
package emulator
