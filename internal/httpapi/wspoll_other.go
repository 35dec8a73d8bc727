//go:build !linux

package httpapi

import "net"

// wsPoll: connections are not polled here; a goroutine reads each one.
type wsPoll struct{}

func (t *webSocket) newPoll(*twsConn, net.Conn, []byte) *wsPoll { return nil }

func (c *twsConn) startPoll() {}

func (p *wsPoll) close() {}
