package main

import (
	"bufio"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/blindbank/blindbank/bank"
	"github.com/blindbank/blindbank/cmd/internal/procs"
	"github.com/blindbank/blindbank/ecash"
)

// denomValue is the one denomination loadgen's banks issue: a coin is a cent.
var denomValue = ecash.Amount{Currency: "EUR", Value: 1}

// keyInfo says where the bank's keys came from.
type keyInfo struct {
	Cipher       string  `json:"cipher"`
	RSABits      int     `json:"rsa_bits,omitempty"`
	Denomination string  `json:"denomination"`
	Generated    bool    `json:"generated"`
	Seconds      float64 `json:"keygen_s,omitempty"` // time to generate them
	File         string  `json:"file,omitempty"`
	// StandIn says the keys are not the bank's: loadgen runs against a
	// bank it did not start (--bank-data), whose private keys stay with it,
	// and measures the crypto limit with keys of the same cipher and size.
	// Denomination is then the running bank's.
	StandIn bool `json:"stand_in,omitempty"`
}

func (k keyInfo) describe() string {
	what := fmt.Sprintf("one denomination %s, %s", k.Denomination, k.Cipher)
	if k.RSABits > 0 {
		what = fmt.Sprintf("one denomination %s, RSA-%d", k.Denomination, k.RSABits)
	}
	if k.StandIn {
		what += "; the crypto limit's keys are stand-ins of the same cipher and size"
	}
	switch {
	case k.Generated && k.File != "":
		return fmt.Sprintf("%s, generated in %.2fs and saved to %s", what, k.Seconds, k.File)
	case k.Generated:
		return fmt.Sprintf("%s, generated in %.2fs", what, k.Seconds)
	}
	return fmt.Sprintf("%s, loaded from %s", what, k.File)
}

// loadOrGenerateKeys returns bank keys holding a denomination of cipher and
// that denomination: loaded from file if it exists, else generated (for rsa
// of rsaBits) and, if file is set, saved there.
func loadOrGenerateKeys(file string, cipher ecash.Cipher, rsaBits int) (*bank.Keys, bank.DenomKey, keyInfo, error) {
	info := keyInfo{Cipher: cipher.String(), File: file}
	var keys *bank.Keys
	if file != "" {
		k, err := bank.LoadKeys(file)
		switch {
		case err == nil:
			keys = k
		case !errors.Is(err, os.ErrNotExist):
			return nil, bank.DenomKey{}, info, fmt.Errorf("--keys: %w", err)
		}
	}
	if keys == nil {
		// Issued a minute ago, so that no clock rounding makes the
		// denomination not yet valid.
		start := time.Now()
		k, err := bank.GenerateKeys(bank.KeyConfig{
			Currency: denomValue.Currency, RSABits: rsaBits,
			Denoms: []bank.DenomSpec{{Value: denomValue, Cipher: cipher}},
		}, time.Now().Add(-time.Minute), rand.Reader)
		if err != nil {
			return nil, bank.DenomKey{}, info, err
		}
		info.Generated, info.Seconds = true, time.Since(start).Seconds()
		keys = k
		if file != "" {
			if err := keys.Save(file); err != nil {
				return nil, bank.DenomKey{}, info, fmt.Errorf("--keys: %w", err)
			}
		}
	}
	now := time.Now()
	for _, d := range keys.Denoms {
		if d.Key.Cipher() == cipher && d.CanWithdraw(now) == nil {
			info.Denomination = d.Value.String()
			info.RSABits = rsaModulusBits(d.Key)
			return keys, d, info, nil
		}
	}
	return nil, bank.DenomKey{}, info, fmt.Errorf("--keys %s holds no %s denomination valid now", file, cipher)
}

// rsaModulusBits is the size of an RSA denomination key; 0 for CS.
func rsaModulusBits(k ecash.DenomPublicKey) int {
	if k.Cipher() != ecash.CipherRSA {
		return 0
	}
	pub, err := x509.ParsePKIXPublicKey(k.Bytes())
	if r, ok := pub.(*rsa.PublicKey); ok && err == nil {
		return r.N.BitLen()
	}
	return 0
}

// machineInfo describes where a measurement ran.
type machineInfo struct {
	CPU  string `json:"cpu,omitempty"`
	CPUs int    `json:"cpus"`
	// Cores is how many of the CPUs the process may use (procs.Cores);
	// GOMAXPROCS is one above it unless the environment set it (procs.Raise).
	Cores      int    `json:"cores"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	OS         string `json:"os"`
	Arch       string `json:"arch"`
	Go         string `json:"go"`
}

func machine() machineInfo {
	return machineInfo{
		CPU: cpuModel(), CPUs: runtime.NumCPU(), Cores: procs.Cores(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		OS: runtime.GOOS, Arch: runtime.GOARCH, Go: runtime.Version(),
	}
}

func (m machineInfo) describe() string {
	cpu := m.CPU
	if cpu == "" {
		cpu = "unknown CPU"
	}
	return fmt.Sprintf("%d CPUs (%s), %s/%s, %s", m.CPUs, cpu, m.OS, m.Arch, m.Go)
}

// cpuModel reads the CPU model name on Linux; "" elsewhere.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
