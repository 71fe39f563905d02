// Command audit verifies blindbank records offline against the bank's key
// set.
//
//	audit keys --bank ADDR --ca FILE --out keyset.signed
//	audit transcript --keys keyset.signed wallet.jsonl
//
// Run "audit --help" for details.
package main

import (
	"os"

	"github.com/blindbank/blindbank/cmd/internal/cli/auditcmd"
)

func main() { os.Exit(auditcmd.Main()) }
