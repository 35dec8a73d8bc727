//go:build !linux

package netpoll

import "syscall"

// Poller is not implemented here: New reports ErrUnsupported.
type Poller struct{}

// Desc is a registered socket.
type Desc struct{}

// New reports ErrUnsupported.
func New() (*Poller, error) { return nil, ErrUnsupported }

// Register reports ErrUnsupported.
func (p *Poller) Register(syscall.RawConn, func()) (*Desc, error) { return nil, ErrUnsupported }

// Rearm reports ErrClosed.
func (d *Desc) Rearm() error { return ErrClosed }

// Close does nothing.
func (d *Desc) Close() {}
