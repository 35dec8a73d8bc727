package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

const password = "loadgen-password-1"

type userRec struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	Token string `json:"token"`
}

type groupRec struct {
	ID      string `json:"id"`
	Members []int  `json:"members"` // user indexes; Members[0] created it
	Cursor  string `json:"cursor,omitempty"`
}

// serverState is what a run set up on one deployment (its URLs).
type serverState struct {
	Prefix string                `json:"prefix"`
	Pools  map[string][]userRec  `json:"pools"` // users by pool: list users are kept apart, so other scenarios' conversations don't show in their lists
	Sets   map[string][]groupRec `json:"sets"`  // conversation sets by shape
}

func (st *serverState) anyUser() (userRec, bool) {
	for _, us := range st.Pools {
		if len(us) > 0 {
			return us[0], true
		}
	}
	return userRec{}, false
}

type stateFile struct {
	Servers map[string]*serverState `json:"servers"`
}

// setup registers users and creates conversations over the API, caching
// both in -state so later runs against the same deployment reuse them.
type setup struct {
	path  string
	key   string
	file  stateFile
	st    *serverState
	urls  []string
	hc    *httpClients
	conc  int
	log   *slog.Logger
	stats setupStats
	mu    sync.Mutex
}

type setupStats struct {
	Registered int     `json:"registered"`
	Created    int     `json:"conversations_created"`
	Messages   int     `json:"messages_sent"`
	Seconds    float64 `json:"seconds"`
	Cached     bool    `json:"cached"`
}

func newSetup(ctx context.Context, path string, urls []string, hc *httpClients, conc int, log *slog.Logger) (*setup, error) {
	s := &setup{path: path, key: strings.Join(urls, ","), urls: urls, hc: hc, conc: conc, log: log}
	s.file.Servers = map[string]*serverState{}
	if path != "" {
		b, err := os.ReadFile(path)
		switch {
		case err == nil:
			if err := json.Unmarshal(b, &s.file); err != nil {
				return nil, fmt.Errorf("state file %s: %w", path, err)
			}
			if s.file.Servers == nil {
				s.file.Servers = map[string]*serverState{}
			}
		case !errors.Is(err, os.ErrNotExist):
			return nil, fmt.Errorf("state file: %w", err)
		}
	}
	s.st = s.file.Servers[s.key]
	if s.st != nil && s.st.Pools == nil {
		s.st = nil // an older layout
	}
	if s.st != nil {
		u, ok := s.st.anyUser()
		if !ok {
			u.Token = "none"
		}
		// A reset database or another JWT secret makes the cache useless.
		var me struct{ Me struct{ ID string } }
		err := gql(ctx, hc.pick(-1), urls[0], u.Token, `{ me { id } }`, nil, &me)
		if err != nil || me.Me.ID != u.ID {
			log.Info("state cache does not match the server; starting afresh", "err", err)
			s.st = nil
		}
	}
	if s.st == nil {
		s.st = &serverState{Prefix: randHex(4), Pools: map[string][]userRec{}, Sets: map[string][]groupRec{}}
		s.file.Servers[s.key] = s.st
	}
	return s, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *setup) save() error {
	if s.path == "" {
		return nil
	}
	b, err := json.Marshal(s.file)
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	tmp := s.path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	if err := os.Rename(tmp, s.path); err != nil {
		return fmt.Errorf("write state: %w", err)
	}
	return nil
}

func (s *setup) url(i int) string { return s.urls[i%len(s.urls)] }

// users returns n users of pool, registering those not cached yet with
// bounded concurrency (the server hashes each password with bcrypt).
func (s *setup) users(ctx context.Context, pool string, n int) ([]userRec, error) {
	have := len(s.st.Pools[pool])
	if have >= n {
		return s.st.Pools[pool][:n], nil
	}
	start := time.Now()
	s.log.Info("registering users", "have", have, "want", n, "concurrency", s.conc)
	fresh := make([]userRec, n-have)
	var (
		wg       sync.WaitGroup
		firstErr error
		errMu    sync.Mutex
		done     int
	)
	sem := make(chan struct{}, s.conc)
	last := time.Now()
	for i := range fresh {
		sem <- struct{}{}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			idx := have + i
			name := fmt.Sprintf("lg%s_%s_%d", s.st.Prefix, pool, idx)
			var out struct {
				Register struct {
					Token string
					User  struct{ ID string }
				}
			}
			err := gql(ctx, s.hc.pick(-1), s.url(idx), "", `mutation($u: String!, $p: String!, $d: String) { register(username: $u, password: $p, displayName: $d) { token user { id } } }`,
				map[string]any{"u": name, "p": password, "d": "Load " + name}, &out)
			errMu.Lock()
			defer errMu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("register %s: %w", name, err)
				}
				return
			}
			fresh[i] = userRec{ID: out.Register.User.ID, Name: name, Token: out.Register.Token}
			done++
			if time.Since(last) > 5*time.Second {
				last = time.Now()
				s.log.Info("registering", "done", done, "of", len(fresh))
			}
		}()
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	// Keep what was registered before the first failure, in order.
	for _, u := range fresh {
		if u.ID == "" {
			break
		}
		s.st.Pools[pool] = append(s.st.Pools[pool], u)
		s.stats.Registered++
	}
	s.stats.Seconds += time.Since(start).Seconds()
	if err := s.save(); err != nil {
		return nil, err
	}
	if firstErr != nil {
		return nil, firstErr
	}
	return s.st.Pools[pool][:n], nil
}

// idChunk is how many user IDs go into one createConversation or
// addParticipants call (the server refuses more than 1000).
const idChunk = 500

// groups returns the conversation set named shape, creating it with make
// if it is not cached (or no longer exists on the server).
// init, if not nil, runs on each conversation just created (say, to post
// messages into it), before the set is cached.
func (s *setup) groups(ctx context.Context, shape string, users []userRec, members [][]int, title string, init func(ctx context.Context, i int, g groupRec) error) ([]groupRec, error) {
	if gs, ok := s.st.Sets[shape]; ok && len(gs) == len(members) {
		var out struct{ Conversation *struct{ ID string } }
		g := gs[len(gs)-1]
		if err := gql(ctx, s.hc.pick(-1), s.urls[0], users[g.Members[0]].Token, `query($id: ID!) { conversation(id: $id) { id } }`, map[string]any{"id": g.ID}, &out); err == nil && out.Conversation != nil {
			s.stats.Cached = true
			return gs, nil
		}
	}
	start := time.Now()
	gs := make([]groupRec, len(members))
	var (
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
	)
	sem := make(chan struct{}, 8)
	for i, m := range members {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			id, err := s.createGroup(ctx, users, m, fmt.Sprintf("%s %d", title, i))
			if err == nil && init != nil {
				err = init(ctx, i, groupRec{ID: id, Members: m})
			}
			errMu.Lock()
			defer errMu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return
			}
			gs[i] = groupRec{ID: id, Members: m}
			s.stats.Created++
		}()
	}
	wg.Wait()
	s.stats.Seconds += time.Since(start).Seconds()
	if firstErr != nil {
		return nil, firstErr
	}
	s.st.Sets[shape] = gs
	return gs, s.save()
}

func (s *setup) createGroup(ctx context.Context, users []userRec, members []int, title string) (string, error) {
	owner := users[members[0]]
	ids := []string{}
	for _, m := range members[1:] {
		ids = append(ids, users[m].ID)
	}
	first := ids[:min(len(ids), idChunk)]
	var out struct{ CreateConversation struct{ ID string } }
	if err := gql(ctx, s.hc.pick(-1), s.url(members[0]), owner.Token, `mutation($p: [ID!]!, $t: String) { createConversation(input: {participantIds: $p, title: $t}) { id } }`,
		map[string]any{"p": first, "t": title}, &out); err != nil {
		return "", fmt.Errorf("createConversation: %w", err)
	}
	id := out.CreateConversation.ID
	for rest := ids[len(first):]; len(rest) > 0; {
		chunk := rest[:min(len(rest), idChunk)]
		rest = rest[len(chunk):]
		if err := gql(ctx, s.hc.pick(-1), s.url(members[0]), owner.Token, `mutation($c: ID!, $u: [ID!]!) { addParticipants(conversationId: $c, userIds: $u) { id } }`,
			map[string]any{"c": id, "u": chunk}, nil); err != nil {
			return "", fmt.Errorf("addParticipants: %w", err)
		}
	}
	return id, nil
}

const sendMutation = `mutation($c: ID!, $b: String!, $k: String) { sendMessage(input: {conversationId: $c, body: $b, clientMessageId: $k}) { id } }`

// send posts one message and returns its ID.
func (s *setup) send(ctx context.Context, u userRec, url, conv, body string) (string, error) {
	var out struct{ SendMessage struct{ ID string } }
	err := gql(ctx, s.hc.pick(-1), url, u.Token, sendMutation, map[string]any{"c": conv, "b": body, "k": randHex(8)}, &out)
	if err == nil {
		s.mu.Lock()
		s.stats.Messages++
		s.mu.Unlock()
	}
	return out.SendMessage.ID, err
}
