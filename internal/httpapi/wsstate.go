package httpapi

import "sync"

// wsState is how a connection ends, shared by both WebSocket
// implementations (gqlgen's transport for the legacy protocol, ours for
// graphql-transport-ws). Its mutex also guards the fields of the
// connection that embeds it.
type wsState struct {
	t         *webSocket
	mu        sync.Mutex
	closing   bool
	user      string // counted against the per-user cap
	closedHow string // "peer", "dead" or the close code sent, for metrics
}

// beginClose reports whether the caller is the one to close the socket;
// stopLocked runs under the lock (the connection's timers). It frees the
// connection's slot at once: a client told to reconnect (1012, 1013) must
// not find its slot still taken by the closing handshake.
func (s *wsState) beginClose(stopLocked func()) bool {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return false
	}
	s.closing = true
	stopLocked()
	user := s.user
	s.user = ""
	s.mu.Unlock()
	if user != "" {
		s.t.releaseUser(user)
	}
	return true
}

// dropDeadPeer closes without a handshake (closeNow): the peer stopped
// answering pings.
func (s *wsState) dropDeadPeer(begin func() bool, closeNow func() error) {
	user := s.viewer()
	if !begin() {
		return
	}
	s.setClosedHow("dead")
	s.t.log.Info("dropping a WebSocket whose client stopped answering pings", "user", user)
	_ = closeNow()
}

func (s *wsState) setClosedHow(how string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closedHow = how
}

func (s *wsState) viewer() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.user
}
