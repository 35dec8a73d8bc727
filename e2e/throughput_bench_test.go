package e2e

// Throughput benchmarks: many closed-loop clients at once through the real
// HTTP handler on loopback, as a load generator drives a deployed server.
//
//	go test -run '^$' -bench 'SendMessageParallel|ConversationListParallel' -benchtime 20000x ./e2e/
//	PARLEY_TEST_DATABASE=postgres go test -run '^$' -bench 'SendMessageParallel|ConversationListParallel' -benchtime 20000x ./e2e/
//
// b.N is the total number of requests, shared by the workers; each worker
// sends its next request as soon as the previous answer is read. Besides
// ns/op each reports req/s and the p50, p90 and p99 latencies. The
// replica logs as a deployed one does (JSON at LOG_LEVEL=info, one line
// per request), to io.Discard. The clients run in the same process and
// share its CPUs with the server, so the figures are pessimistic.

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/parley-chat/parley/internal/apptest"
)

const sendMessageQ = `mutation($in: SendMessageInput!){ sendMessage(input:$in){ id } }`

const conversationListLoadQ = `query { conversations(first: 20){ totalCount pageInfo{hasNextPage endCursor} edges{ cursor node{ id kind title updatedAt unreadCount participants{id username displayName} lastMessage{id body createdAt sender{id displayName}} } } } }`

// throughputEnv: the limits a load test turns off, and production logging.
// The response cache is off: these measure executing the operations (a
// repeated list would otherwise be answered from it; cmd/loadgen's list
// scenario measures the server as deployed).
var throughputEnv = []string{
	"RATE_LIMIT_MUTATIONS=off", "RATE_LIMIT_CONNECTIONS=off", "RATE_LIMIT_AUTH=off", "RESPONSE_CACHE=off",
	"RESYNC_INTERVAL=1h", "LOG_LEVEL=info", "LOG_FORMAT=json", apptest.LogDiscard + "=1",
}

// BenchmarkSendMessageParallel: 32 workers send messages, each as its own
// user, either each in a conversation of its own or 8 to a conversation.
// Every request carries a fresh clientMessageId.
func BenchmarkSendMessageParallel(b *testing.B) {
	const workers = 32
	for _, perConv := range []int{1, 8} {
		b.Run(fmt.Sprintf("workers=%d/per-conversation=%d", workers, perConv), func(b *testing.B) {
			s := apptest.Start(b, throughputEnv...)
			users := registerMany(b, s, "sender", workers)
			convs := make([]string, workers/perConv)
			for i := range convs {
				group := users[i*perConv : (i+1)*perConv]
				if perConv == 1 {
					convs[i] = s.CreateConversation(group[0], nil, s.RegisterFor(b, "peer"))
				} else {
					convs[i] = s.CreateConversation(group[0], apptest.Ptr("load"), group[1:]...)
				}
			}
			var seq atomic.Int64
			runParallel(b, s, workers, func(w int) (string, func() []byte) {
				conv := convs[w/perConv]
				return users[w].Token, func() []byte {
					n := seq.Add(1)
					return []byte(`{"query":` + strconv.Quote(sendMessageQ) + `,"variables":{"in":{"conversationId":"` + conv +
						`","body":"load test message ` + strconv.FormatInt(n, 10) + `","clientMessageId":"c-` + strconv.FormatInt(n, 10) + `"}}}`)
				}
			})
		})
	}
}

// BenchmarkConversationListParallel: 16 workers, each as its own user in
// 21 conversations with messages, read the first page of their
// conversation list.
func BenchmarkConversationListParallel(b *testing.B) {
	const workers = 16
	s := apptest.Start(b, throughputEnv...)
	users := registerMany(b, s, "reader", workers)
	peers := registerMany(b, s, "peer", 6)
	// Each worker: a DIRECT conversation with every other worker (15) and
	// 6 GROUP ones with peers; 2 to 3 messages in each.
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	do := func(fn func()) {
		wg.Add(1)
		sem <- struct{}{}
		go func() { defer wg.Done(); defer func() { <-sem }(); fn() }()
	}
	for i := range users {
		for j := i + 1; j < len(users); j++ {
			do(func() {
				c := s.CreateConversation(users[i], nil, users[j])
				s.Send(users[i], c, "hello")
				s.Send(users[j], c, "hi, how are you?")
			})
		}
		for k := range 6 {
			do(func() {
				c := s.CreateConversation(users[i], apptest.Ptr(fmt.Sprintf("group %d-%d", i, k)), peers[k], peers[(k+1)%len(peers)])
				s.Send(peers[k], c, "welcome")
				s.Send(users[i], c, "thanks")
				s.Send(peers[(k+1)%len(peers)], c, "unread one")
			})
		}
	}
	wg.Wait()
	body := []byte(`{"query":` + strconv.Quote(conversationListLoadQ) + `}`)
	runParallel(b, s, workers, func(w int) (string, func() []byte) {
		return users[w].Token, func() []byte { return body }
	})
}

func registerMany(b *testing.B, s *apptest.Server, prefix string, n int) []apptest.User {
	users := make([]apptest.User, n)
	var wg sync.WaitGroup
	for i := range users {
		wg.Go(func() { users[i] = s.RegisterFor(b, prefix) })
	}
	wg.Wait()
	return users
}

// runParallel runs workers closed-loop clients, each with its own
// keep-alive connection, token and request bodies (setup returns them for
// worker w), for b.N requests in all after a warm-up, and reports the
// latency percentiles and req/s. Every response must be 200 and start with
// data (gqlgen writes errors first).
func runParallel(b *testing.B, s *apptest.Server, workers int, setup func(w int) (token string, body func() []byte)) {
	transport := &http.Transport{MaxIdleConns: workers, MaxIdleConnsPerHost: workers, MaxConnsPerHost: workers}
	client := &http.Client{Transport: transport, Timeout: 30 * time.Second}
	b.Cleanup(transport.CloseIdleConnections)
	endpoint := s.URL + "/graphql"
	send := func(token string, body []byte, buf *bytes.Buffer) (time.Duration, error) {
		req, _ := http.NewRequest(http.MethodPost, endpoint, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		start := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		buf.Reset()
		_, err = buf.ReadFrom(resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		if err != nil {
			return 0, err
		}
		if resp.StatusCode != http.StatusOK || !bytes.HasPrefix(buf.Bytes(), []byte(`{"data":{`)) {
			return 0, fmt.Errorf("status %d: %.300s", resp.StatusCode, buf.Bytes())
		}
		return took, nil
	}
	type worker struct {
		token string
		body  func() []byte
		lat   []time.Duration
		err   error
	}
	ws := make([]*worker, workers)
	for i := range ws {
		tok, body := setup(i)
		ws[i] = &worker{token: tok, body: body}
	}
	run := func(total int64, record bool) (time.Duration, error) {
		var left atomic.Int64
		left.Store(total)
		var wg sync.WaitGroup
		start := time.Now()
		for _, w := range ws {
			wg.Go(func() {
				var buf bytes.Buffer
				for left.Add(-1) >= 0 {
					took, err := send(w.token, w.body(), &buf)
					if err != nil {
						w.err = err
						left.Store(0)
						return
					}
					if record {
						w.lat = append(w.lat, took)
					}
				}
			})
		}
		wg.Wait()
		elapsed := time.Since(start)
		for _, w := range ws {
			if w.err != nil {
				return 0, w.err
			}
		}
		return elapsed, nil
	}
	// Warm: connections, query cache, prepared plans, page cache.
	if _, err := run(int64(workers*50), false); err != nil {
		b.Fatal(err)
	}
	statementsBefore := s.App.DB.Statements.Load()
	cpuBefore := processCPU()
	stopProfile := profileCPU(b)
	b.ResetTimer()
	elapsed, err := run(int64(b.N), true)
	b.StopTimer()
	stopProfile()
	cpu := processCPU() - cpuBefore
	if err != nil {
		b.Fatal(err)
	}
	var lat []time.Duration
	for _, w := range ws {
		lat = append(lat, w.lat...)
	}
	if len(lat) == 0 {
		return
	}
	reportLatencies(b, lat, elapsed, s.App.DB.Statements.Load()-statementsBefore)
	// CPU of the whole process (server and clients) per request, and the
	// share of the machine's CPUs used while measuring.
	b.ReportMetric(float64(cpu)/float64(time.Millisecond)/float64(len(lat)), "cpu-ms/op")
	b.ReportMetric(100*cpu.Seconds()/elapsed.Seconds()/float64(runtime.NumCPU()), "cpu-%")
}

// profileCPU writes a CPU profile of the measured requests alone (no
// set-up, no warm-up) to $PARLEY_BENCH_CPUPROFILE, suffixed with the
// benchmark's name, when set.
func profileCPU(b *testing.B) (stop func()) {
	dir := os.Getenv("PARLEY_BENCH_CPUPROFILE")
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(dir + "." + strings.NewReplacer("/", "_", "=", "").Replace(b.Name()) + ".pprof")
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}
}

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
