// Package hubapitest holds test support for code that uses hubapi: a fake clock that makes retries,
// pacing and token renewal take no wall time, and a checker that holds requests to the official IoT Hub
// swagger (paths, methods, parameters and body schemas).
package hubapitest
