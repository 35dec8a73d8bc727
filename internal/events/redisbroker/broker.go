// Package redisbroker bridges replicas through Redis pub/sub: one Redis
// subscription per replica carries every event of every conversation.
//
// Redis pub/sub is at most once, and messages published while a subscriber
// reconnects are lost. The broker does not try to hide that: events are
// doorbells and the database holds the record, so after every (re)connect it
// asks the hub to resync from the database. Local subscribers never depend on
// Redis: a replica delivers its own events to itself directly, so while Redis
// is down each replica keeps serving its own subscribers.
package redisbroker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/xid"

	"github.com/parley-chat/parley/internal/events"
)

// Config configures a Broker.
type Config struct {
	Client *redis.Client
	// Prefix namespaces the channel: Redis pub/sub ignores the database
	// number, so two deployments sharing a Redis must differ here.
	Prefix string
	// OnConnect is called after every successful (re)subscription, so that
	// events missed while disconnected are recovered from the database.
	OnConnect func()
	// MinBackoff and MaxBackoff bound the reconnect delay, which doubles
	// after each failed attempt and is jittered.
	MinBackoff, MaxBackoff time.Duration
	// PingInterval is how often an idle subscription checks its connection.
	PingInterval time.Duration
	Logger       *slog.Logger
}

// Broker implements events.Broker over Redis.
type Broker struct {
	cfg     Config
	channel string
	origin  string

	local   *events.MemoryBroker
	started sync.Once
	running atomic.Bool

	mu        sync.Mutex
	up        bool
	downSince time.Time
	lastErr   error

	reconnects     atomic.Int64
	publishErrors  atomic.Int64
	publishSkipped atomic.Int64
}

// New returns a Broker; Subscribe starts its Redis subscription.
func New(cfg Config) *Broker {
	if cfg.Prefix == "" {
		cfg.Prefix = "parley"
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 10 * time.Second
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Broker{
		cfg:       cfg,
		channel:   cfg.Prefix + ":events",
		origin:    xid.New().String(),
		local:     events.NewMemoryBroker(),
		downSince: time.Now(),
		lastErr:   errors.New("not connected yet"),
	}
}

type envelope struct {
	Origin string       `json:"o"`
	Event  events.Event `json:"e"`
}

// Publish delivers e to this replica's subscribers at once and to the other
// replicas through Redis. While the subscription is down it does not wait
// for Redis: the others recover the event from the database on reconnect.
func (b *Broker) Publish(ctx context.Context, e events.Event) error {
	_ = b.local.Publish(ctx, e)
	if b.running.Load() && !b.Connected() {
		b.publishSkipped.Add(1)
		return nil
	}
	payload, err := json.Marshal(envelope{Origin: b.origin, Event: e})
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	if err := b.cfg.Client.Publish(ctx, b.channel, payload).Err(); err != nil {
		b.publishErrors.Add(1)
		return fmt.Errorf("redis publish: %w", err)
	}
	return nil
}

// Subscribe registers deliver. The first call starts the replica's one Redis
// subscription, which lives until that call's ctx ends.
func (b *Broker) Subscribe(ctx context.Context, deliver func(events.Event)) error {
	if err := b.local.Subscribe(ctx, deliver); err != nil {
		return err
	}
	b.started.Do(func() {
		b.running.Store(true)
		go b.run(ctx)
	})
	return nil
}

// Connected reports whether the Redis subscription is up.
func (b *Broker) Connected() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.up
}

// Check is the readiness check: the subscription must be up (known without
// a round trip, so a probe never waits on a dead Redis) and Redis answer.
func (b *Broker) Check(ctx context.Context) error {
	b.mu.Lock()
	up, since, lastErr := b.up, b.downSince, b.lastErr
	b.mu.Unlock()
	if !up {
		return fmt.Errorf("redis subscription down since %s: %w", since.Format(time.RFC3339), lastErr)
	}
	if err := b.cfg.Client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis ping: %w", err)
	}
	return nil
}

// Stats are counters for metrics.
type Stats struct {
	Reconnects, PublishErrors, PublishSkipped int64
}

// Stats returns the broker's counters.
func (b *Broker) Stats() Stats {
	return Stats{Reconnects: b.reconnects.Load(), PublishErrors: b.publishErrors.Load(), PublishSkipped: b.publishSkipped.Load()}
}

func (b *Broker) setUp() {
	b.mu.Lock()
	wasDown := !b.up
	down := time.Since(b.downSince)
	b.up, b.lastErr = true, nil
	b.mu.Unlock()
	if wasDown {
		b.cfg.Logger.Info("redis subscription up", "channel", b.channel, "was_down", down.Round(time.Millisecond).String())
	}
}

func (b *Broker) setDown(err error) {
	b.mu.Lock()
	wasUp := b.up
	if wasUp {
		b.downSince = time.Now()
	}
	b.up, b.lastErr = false, err
	b.mu.Unlock()
	if wasUp {
		b.cfg.Logger.Warn("redis subscription down; serving local subscribers only", "err", err)
	}
}

// run keeps one subscription alive, reconnecting with exponential backoff
// and jitter (each delay drawn from [backoff/2, 3·backoff/2)).
func (b *Broker) run(ctx context.Context) {
	backoff := b.cfg.MinBackoff
	first := true
	for ctx.Err() == nil {
		ps := b.cfg.Client.Subscribe(ctx, b.channel)
		// The first reply confirms the subscription.
		_, err := ps.ReceiveTimeout(ctx, b.cfg.PingInterval+b.cfg.Client.Options().DialTimeout)
		if err == nil {
			backoff = b.cfg.MinBackoff
			b.setUp()
			if !first {
				b.reconnects.Add(1)
			}
			first = false
			if b.cfg.OnConnect != nil {
				b.cfg.OnConnect()
			}
			err = b.receive(ctx, ps)
		}
		_ = ps.Close()
		if ctx.Err() != nil {
			return
		}
		b.setDown(err)
		sleep := time.Duration(rand.Int64N(int64(backoff))) + backoff/2
		select {
		case <-ctx.Done():
			return
		case <-time.After(sleep):
		}
		backoff = min(backoff*2, b.cfg.MaxBackoff)
	}
}

// receive reads messages until the connection fails. An idle connection is
// pinged; one that does not answer before the next timeout is dead, which
// catches a peer that vanished without closing the connection.
func (b *Broker) receive(ctx context.Context, ps *redis.PubSub) error {
	awaitingPong := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, b.cfg.PingInterval)
		if err != nil {
			var netErr interface{ Timeout() bool }
			if !errors.As(err, &netErr) || !netErr.Timeout() || ctx.Err() != nil {
				return err
			}
			if awaitingPong {
				return fmt.Errorf("redis did not answer a ping within %s", b.cfg.PingInterval)
			}
			if err := ps.Ping(ctx); err != nil {
				return err
			}
			awaitingPong = true
			continue
		}
		awaitingPong = false
		m, ok := msg.(*redis.Message)
		if !ok {
			continue // subscription confirmations and pongs
		}
		var env envelope
		if err := json.Unmarshal([]byte(m.Payload), &env); err != nil {
			b.cfg.Logger.Warn("undecodable event on redis", "err", err)
			continue
		}
		if env.Origin == b.origin {
			continue // delivered locally when published
		}
		_ = b.local.Publish(ctx, env.Event)
	}
}
