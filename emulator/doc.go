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
// a hash of the device id and the seed, never by a random draw at run time.
package emulator
