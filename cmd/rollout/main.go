// Command rollout runs staged, gated rollouts of twin updates and direct methods over Azure IoT Hub
// device fleets. See the README for the plan format and the commands.
package main

import "os"

func main() {
	os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
