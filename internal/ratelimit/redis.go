package ratelimit

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// gcra is GCRA over one key holding the theoretical arrival time in
// microseconds of the Redis server's clock. It returns {allowed, retry_us}.
var gcra = redis.NewScript(`
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local nxt = tat + interval
local over = nxt - now - tolerance
if over > 0 then return {0, over} end
redis.call('SET', KEYS[1], nxt, 'PX', math.ceil((nxt - now) / 1000) + 1)
return {1, 0}
`)

// Redis is a limiter shared by every replica using the same Redis.
type Redis struct {
	client *redis.Client
	prefix string
}

// NewRedis returns a limiter whose keys start with prefix.
func NewRedis(client *redis.Client, prefix string) *Redis {
	return &Redis{client: client, prefix: prefix + ":rl:"}
}

// Allow counts one event for key.
func (r *Redis) Allow(ctx context.Context, key string, rate Rate) (Decision, error) {
	if rate.Disabled() {
		return Decision{Allowed: true}, nil
	}
	res, err := gcra.Run(ctx, r.client, []string{r.prefix + key},
		rate.interval().Microseconds(), rate.tolerance().Microseconds()).Int64Slice()
	if err != nil {
		return Decision{}, fmt.Errorf("rate limit: %w", err)
	}
	if len(res) != 2 {
		return Decision{}, fmt.Errorf("rate limit: unexpected reply %v", res)
	}
	return Decision{Allowed: res[0] == 1, RetryAfter: time.Duration(res[1]) * time.Microsecond}, nil
}
