// Command audit verifies blindbank records against the bank's signed keys:
// a wallet's or merchant's transcript offline, against a saved key set, and
// the bank's whole audit log online, fetched from the bank.
//
//	audit keys --bank ADDR --ca FILE --out keyset.signed
//	audit transcript --keys keyset.signed wallet.jsonl
//	audit log --bank ADDR --ca FILE --state bank.audit
//
// Run "audit --help" for details.
package main

import (
	"os"

	"github.com/blindbank/blindbank/cmd/internal/cli/auditcmd"
)

func main() { os.Exit(auditcmd.Main()) }
