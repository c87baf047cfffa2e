// Command plab is the whole of plab in one binary: the PLC, the node and
// the user's command line. See plab --help.
package main

import "os"

func main() { os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr)) }
