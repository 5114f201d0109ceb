package main

import "os"

// osGetenv is the only place the CLI reads the process environment; tests pass their own.
var osGetenv = os.Getenv
