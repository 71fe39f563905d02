// Command wallet is a blindbank wallet: e-cash coins, and a checkbook on the
// customer's bank account (NetBill electronic checks).
//
//	wallet init --bank ADDR --ca FILE
//	wallet set-account ID
//	wallet withdraw EUR:10.00
//	wallet pay --merchant ADDR --merchant-ca FILE --order ORDER_ID
//	wallet swap EUR:5.00
//	wallet return EUR:5.00
//	wallet balance
//	wallet buy --merchant ADDR --merchant-ca FILE --product ID --out FILE
//	wallet write-check --merchant ADDR --merchant-ca FILE --amount EUR:5.00
//	wallet statement
//
// Run "wallet --help" for details.
package main

import (
	"os"

	"github.com/blindbank/blindbank/cmd/internal/cli/walletcmd"
)

func main() { os.Exit(walletcmd.Main()) }
