// Command loadgen drives a Parley deployment (any server of API.md) over
// HTTP and graphql-transport-ws, against one replica or several, and
// measures it.
//
// Scenarios (-scenario):
//
//	fanout       U users in K group conversations, -subscribers sockets each
//	             subscribed to its user's group on a WebSocket of its own;
//	             after a warm-up message per group reached every socket,
//	             open-loop sends at -rate msg/s for -duration (or -messages in
//	             all), then a drain; every delivery is checked.
//	connections  -conns idle authenticated subscriptions opened at -conn-rate,
//	             each proven live (ping/pong after subscribe, then one message
//	             per group that every socket must receive after -hold).
//	churn        at -rate sockets/s for -duration: connect, init, subscribe
//	             with a resume cursor, receive the replayed event, disconnect;
//	             then compare the server's goroutines and memory with before.
//	sendrate     -workers closed-loop sendMessage callers, each its own user.
//	list         -workers closed-loop conversations(first: 20) queries with
//	             participants, lastMessage and unreadCount, as users in
//	             -convs conversations each.
//	writefloor   no server: a second process writes -frame-bytes frames in
//	             fanout's pattern (-subscribers sockets, -groups, -rate,
//	             -duration) to sockets this one reads, and reports its CPU
//	             per write: what the kernel alone charges any server for a
//	             delivery on this machine.
//
// Checks on every delivery: lost (sent OK, not received by a socket of the
// group), duplicated (twice on one socket), out of order (after a message
// whose send began only once its own had completed), and sockets of a group
// that disagree on the order. Latency is end to end, from the scheduled send
// time, so a late sender does not hide its delay.
//
// Start the server for load runs with its limits off, for example:
//
//	RATE_LIMIT_MUTATIONS=off RATE_LIMIT_CONNECTIONS=off RATE_LIMIT_AUTH=off \
//	WS_MAX_CONNECTIONS_PER_USER=100000 DATABASE_URL=/tmp/lg.db ADDR=127.0.0.1:8080 ./parley
//
// Examples:
//
//	go run ./cmd/loadgen -scenario fanout -url http://127.0.0.1:8080 -subscribers 1000 -groups 10 -rate 200 -duration 20s -server-pid $PID -state /tmp/lg.state -json out.json
//	go run ./cmd/loadgen -scenario connections -conns 19000 -sockets-per-user 100 -procs 3 -source-addrs 127.0.0.1-127.0.0.8 -server-pid $PID
//
// A process may have 20,000 open files here, so large runs spread their
// sockets over -procs worker processes (this binary again, driven over
// stdin/stdout with JSON) and over -source-addrs loopback addresses.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type config struct {
	Scenario        string        `json:"scenario"`
	URLs            []string      `json:"urls"`
	Users           int           `json:"users"`
	Groups          int           `json:"groups"`
	Subscribers     int           `json:"subscribers"`
	SocketsPerUser  int           `json:"sockets_per_user"`
	Rate            float64       `json:"rate"`
	Messages        int           `json:"messages"`
	Duration        time.Duration `json:"duration"`
	Workers         int           `json:"workers"`
	Convs           int           `json:"convs"`
	ListSendRate    float64       `json:"list_send_rate,omitempty"`
	Procs           int           `json:"procs"`
	SourceAddrs     []string      `json:"source_addrs"`
	ServerPIDs      []int         `json:"server_pids"`
	ConnRate        float64       `json:"conn_rate"`
	ConnConcurrency int           `json:"conn_concurrency"`
	Hold            time.Duration `json:"hold"`
	OpenSettle      time.Duration `json:"open_settle"`
	Drain           time.Duration `json:"drain"`
	Settle          time.Duration `json:"settle"`
	RegConcurrency  int           `json:"register_concurrency"`
	Progress        time.Duration `json:"progress"`
	JSONPath        string        `json:"json_path"`
	StatePath       string        `json:"state_path"`
	FrameBytes      int           `json:"frame_bytes,omitempty"`
}

// socketsPerProc keeps every worker process well under the 20,000 open
// files a process may have.
const socketsPerProc = 9000

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var urls, srcs, pids string
	fs.StringVar(&c.Scenario, "scenario", "fanout", "fanout, connections, churn, sendrate, list or writefloor")
	fs.StringVar(&urls, "url", "http://127.0.0.1:8080", "replica base URLs, comma-separated; sockets and senders are spread over them round-robin")
	fs.IntVar(&c.Users, "users", 0, "users (default: subscribers / sockets-per-user; churn 10; sendrate and list: workers)")
	fs.IntVar(&c.Groups, "groups", 10, "group conversations the users are spread over (fanout, connections, churn)")
	fs.IntVar(&c.Subscribers, "subscribers", 0, "sockets (fanout default 1000, connections default 1000)")
	fs.IntVar(&c.Subscribers, "conns", 0, "same as -subscribers")
	fs.IntVar(&c.SocketsPerUser, "sockets-per-user", 0, "sockets per user, so big runs need few registrations (fanout default 1, connections 50)")
	fs.Float64Var(&c.Rate, "rate", 0, "fanout: messages/s (default 200); churn: connections/s (default 100)")
	fs.IntVar(&c.Messages, "messages", 0, "fanout: messages in all (default rate × duration)")
	fs.DurationVar(&c.Duration, "duration", 0, "send phase or closed-loop duration (default 20s; churn 10s)")
	fs.IntVar(&c.Workers, "workers", 0, "closed-loop concurrency (sendrate default 32, list 16)")
	fs.Float64Var(&c.ListSendRate, "list-send-rate", 0, "list: messages a second sent into the listed conversations during the run (each changes its members' lists, so their next list is computed afresh)")
	fs.IntVar(&c.Convs, "convs", 0, "sendrate: conversations the workers share (default one each); list: conversations per user (default 25)")
	fs.IntVar(&c.Procs, "procs", -1, "worker processes holding sockets (0: in this process; default: one per 9,000 sockets, in-process below)")
	fs.StringVar(&srcs, "source-addrs", "", "local addresses to bind outgoing connections to, round-robin: 127.0.0.1-127.0.0.8 or a,b,c")
	fs.StringVar(&pids, "server-pid", "", "replica PIDs (comma-separated, in -url order) for CPU and RSS from /proc")
	fs.Float64Var(&c.ConnRate, "conn-rate", 0, "sockets opened per second, over all workers (0: as fast as -conn-concurrency allows)")
	fs.IntVar(&c.ConnConcurrency, "conn-concurrency", 256, "sockets being opened at once, per worker process")
	fs.DurationVar(&c.Hold, "hold", 5*time.Second, "connections: how long the idle sockets are held")
	fs.DurationVar(&c.OpenSettle, "open-settle", 2*time.Second, "pause after the sockets opened, before the server's memory is read and messages flow")
	fs.DurationVar(&c.Drain, "drain", 30*time.Second, "longest wait for deliveries after the last send (a socket missing one then counts it lost)")
	fs.DurationVar(&c.Settle, "settle", 15*time.Second, "churn: how long to wait for the server's goroutines to return to baseline")
	fs.IntVar(&c.RegConcurrency, "register-concurrency", 8, "registrations at once during setup")
	fs.DurationVar(&c.Progress, "progress", 5*time.Second, "progress line interval on stderr (0: none)")
	fs.StringVar(&c.JSONPath, "json", "", "write the full report as JSON to this file")
	fs.IntVar(&c.FrameBytes, "frame-bytes", 0, "writefloor: bytes per write (default 330, a fanout delivery's WebSocket frame)")
	fs.StringVar(&c.StatePath, "state", "", "cache of registered users and created conversations, reused by later runs against the same URLs")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, u := range strings.Split(urls, ",") {
		if u = strings.TrimRight(strings.TrimSpace(u), "/"); u != "" {
			c.URLs = append(c.URLs, u)
		}
	}
	if len(c.URLs) == 0 {
		return c, errors.New("-url: none given")
	}
	var err error
	if c.SourceAddrs, err = parseSourceAddrs(srcs); err != nil {
		return c, err
	}
	for _, p := range strings.Split(pids, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		n, err := strconv.Atoi(p)
		if err != nil {
			return c, fmt.Errorf("-server-pid %q: %w", p, err)
		}
		c.ServerPIDs = append(c.ServerPIDs, n)
	}
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	deff := func(v *float64, d float64) {
		if *v <= 0 {
			*v = d
		}
	}
	defd := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	switch c.Scenario {
	case "fanout", "connections":
		def(&c.Subscribers, 1000)
		if c.Scenario == "fanout" {
			def(&c.SocketsPerUser, 1)
			deff(&c.Rate, 200)
		} else {
			def(&c.SocketsPerUser, 50)
			deff(&c.Rate, 1000)
			c.Messages = 0 // one per group
		}
		def(&c.Users, (c.Subscribers+c.SocketsPerUser-1)/c.SocketsPerUser)
		defd(&c.Duration, 20*time.Second)
		if c.Procs < 0 {
			c.Procs = 0
			if c.Subscribers > socketsPerProc {
				c.Procs = (c.Subscribers + socketsPerProc - 1) / socketsPerProc
			}
		}
		if per := c.Subscribers / max(c.Procs, 1); per > 19000 {
			return c, fmt.Errorf("%d sockets per process: a process may open 20,000 files here; raise -procs", per)
		}
	case "churn":
		def(&c.Users, 10)
		deff(&c.Rate, 100)
		defd(&c.Duration, 10*time.Second)
		c.Procs = max(c.Procs, 0)
	case "sendrate", "list":
		def(&c.Workers, map[string]int{"sendrate": 32, "list": 16}[c.Scenario])
		def(&c.Users, c.Workers)
		def(&c.Convs, map[string]int{"sendrate": c.Workers, "list": 25}[c.Scenario])
		if c.Scenario == "sendrate" {
			c.Convs = min(c.Convs, c.Users) // each conversation has a sender of its own
		}
		defd(&c.Duration, 20*time.Second)
		c.Procs = 0
	case "writefloor":
		def(&c.Subscribers, 1000)
		deff(&c.Rate, 200)
		defd(&c.Duration, 20*time.Second)
		def(&c.FrameBytes, 330)
		def(&c.Users, c.Subscribers)
		c.Procs = 0
	default:
		return c, fmt.Errorf("-scenario %q: want fanout, connections, churn, sendrate, list or writefloor", c.Scenario)
	}
	def(&c.Groups, 1)
	c.Groups = min(c.Groups, c.Users)
	def(&c.RegConcurrency, 8)
	return c, nil
}

func main() {
	if os.Getenv(floorEnv) != "" {
		if err := floorMain(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if os.Getenv(workerEnv) == "1" {
		if err := workerMain(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	if !rep.Pass {
		os.Exit(2)
	}
}

// run is the whole tool: parse args, set up, drive, report.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) (*Report, error) {
	cfg, err := parseFlags(args, stderr)
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	e := &env{cfg: cfg, log: log, run: randHex(4), stderr: stderr}
	e.hc = newHTTPClients(cfg.SourceAddrs, 1024)
	e.watch = newServerWatch(cfg.URLs, cfg.ServerPIDs)
	rep := &Report{Scenario: cfg.Scenario, Args: args, Config: cfg, Start: time.Now(), Host: host(), Run: e.run}
	e.rep = rep
	if cfg.Scenario != "writefloor" {
		e.setup, err = newSetup(ctx, cfg.StatePath, cfg.URLs, e.hc, cfg.RegConcurrency, log)
		if err != nil {
			return nil, err
		}
	}
	switch cfg.Scenario {
	case "writefloor":
		err = e.runFloor(ctx)
	case "fanout", "connections":
		err = e.runSubs(ctx)
	case "churn":
		err = e.runChurn(ctx)
	case "sendrate", "list":
		err = e.runClosed(ctx)
	}
	if e.setup != nil {
		rep.Setup = e.setup.stats
	}
	e.stopWorkers()
	if err != nil {
		return nil, err
	}
	rep.Host.LoadAvgEnd = loadAvg()
	rep.finish()
	rep.print(stdout)
	if cfg.JSONPath != "" {
		b, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("encode report: %w", err)
		}
		if err := os.WriteFile(cfg.JSONPath, b, 0o644); err != nil {
			return nil, fmt.Errorf("write report: %w", err)
		}
	}
	return rep, nil
}
