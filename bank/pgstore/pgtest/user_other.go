//go:build !unix

package pgtest

import (
	"errors"
	"os/exec"
)

type runAs struct{}

func serverUser() (*runAs, error) {
	return nil, errors.New("pgtest: throwaway servers are supported on unix only")
}

func (r *runAs) own(string) error { return nil }

func (r *runAs) apply(*exec.Cmd) {}

func processAlive(int) bool { return true }

func quit(int) {}
