// Package hubapi is rollout's client for the Azure IoT Hub service REST API (api-version 2021-04-12):
// connection strings and SAS tokens, Microsoft Entra credentials, device identities, twins, queries,
// jobs v2 and direct methods, with typed errors, bounded retries and pacing to a hub tier's quotas.
//
// A session starts with Client.Probe, a cheap read-only call that learns the tier an emulator states
// (HubInfo) and turns a hub that cannot be reached into a *ContactError within seconds: a host that
// does not resolve, nothing listening at its address, or a certificate from an unknown authority, each
// with what to check.
//
// It also defines the wire models (Twin, JobRequest, JobResponse, DeviceJob, ...) that the emulator
// serves and the engine reads, so that both speak exactly one definition of the protocol.
package hubapi
