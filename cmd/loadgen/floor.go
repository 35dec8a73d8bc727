package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"
)

// floorEnv, set to the JSON of a floorReq, makes the binary the sending
// side of the writefloor scenario.
const floorEnv = "PARLEY_LOADGEN_FLOOR"

// floorReq is what the sending process is asked to do.
type floorReq struct {
	Addr       string        `json:"addr"`
	Sockets    int           `json:"sockets"`
	Groups     int           `json:"groups"`
	Rate       float64       `json:"rate"`
	Duration   time.Duration `json:"duration"`
	FrameBytes int           `json:"frame_bytes"`
}

// floorResult is what the kernel alone charges a process that writes the
// fan-out pattern: no GraphQL, no database, one write per delivery from a
// single goroutine, the least any server must do for it. Servers are
// judged in CPU per delivery against this.
type floorResult struct {
	floorReq
	Writes         int64   `json:"writes"`
	Received       int64   `json:"received_bytes"`
	SenderUserSecs float64 `json:"sender_user_seconds"`
	SenderSysSecs  float64 `json:"sender_system_seconds"`
	SenderWallSecs float64 `json:"sender_wall_seconds"`
	CPUPerWriteUS  float64 `json:"sender_cpu_per_write_us"`
}

// runFloor starts a sending process that connects -subscribers sockets to
// this one and writes a -frame-bytes frame to every socket of one of
// -groups groups at -rate events/s, as the fan-out scenario's server does,
// and reads them all here, as the fan-out scenario's subscribers do.
func (e *env) runFloor(ctx context.Context) error {
	cfg := e.cfg
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	var received atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					received.Add(int64(n))
					if err != nil {
						return
					}
				}
			})
		}
	}()
	defer func() {
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}()
	req := floorReq{Addr: ln.Addr().String(), Sockets: cfg.Subscribers, Groups: cfg.Groups, Rate: cfg.Rate, Duration: cfg.Duration, FrameBytes: cfg.FrameBytes}
	b, _ := json.Marshal(req)
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own binary: %w", err)
	}
	cmd := exec.CommandContext(ctx, self)
	cmd.Env = append(os.Environ(), floorEnv+"="+string(b))
	cmd.Stderr = e.stderr
	cpu0 := selfCPU(nil)
	out, err := cmd.Output()
	cpu1 := selfCPU(nil)
	if err != nil {
		return fmt.Errorf("sending process: %w", err)
	}
	res := &floorResult{}
	if err := json.Unmarshal(out, res); err != nil {
		return fmt.Errorf("sending process said %q: %w", out, err)
	}
	want := res.Writes * int64(res.FrameBytes)
	for deadline := time.Now().Add(10 * time.Second); received.Load() < want && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	res.Received = received.Load()
	e.rep.Floor = res
	e.rep.Throughput = float64(res.Writes) / res.SenderWallSecs
	if res.Received != want {
		e.rep.Checks.Lost = (want - res.Received + int64(res.FrameBytes) - 1) / int64(res.FrameBytes)
	}
	// The reading side's CPU, without the sender's (a child process).
	e.rep.Loadgen.CPUSeconds = cpu1 - cpu0
	e.rep.Loadgen.WallSeconds = res.SenderWallSecs
	e.rep.Loadgen.CPUShare = e.rep.Loadgen.CPUSeconds / res.SenderWallSecs
	return nil
}

// floorMain is the sending process.
func floorMain() error {
	var req floorReq
	if err := json.Unmarshal([]byte(os.Getenv(floorEnv)), &req); err != nil {
		return fmt.Errorf("%s: %w", floorEnv, err)
	}
	if req.Sockets <= 0 || req.Groups <= 0 || req.Rate <= 0 || req.FrameBytes <= 0 {
		return errors.New("writefloor: sockets, groups, rate and frame size must be positive")
	}
	conns := make([]net.Conn, req.Sockets)
	for i := range conns {
		c, err := net.Dial("tcp", req.Addr)
		if err != nil {
			return fmt.Errorf("dial: %w", err)
		}
		defer c.Close()
		conns[i] = c
	}
	frame := make([]byte, req.FrameBytes)
	for i := range frame {
		frame[i] = 'x'
	}
	res := floorResult{floorReq: req}
	tick := time.NewTicker(time.Duration(float64(time.Second) / req.Rate))
	defer tick.Stop()
	u0, s0 := rusage()
	start := time.Now()
	for g := 0; time.Since(start) < req.Duration; g++ {
		<-tick.C
		// Group g%Groups: sockets i with i%Groups == g%Groups.
		for i := g % req.Groups; i < len(conns); i += req.Groups {
			if _, err := conns[i].Write(frame); err != nil {
				return fmt.Errorf("write: %w", err)
			}
			res.Writes++
		}
	}
	res.SenderWallSecs = time.Since(start).Seconds()
	u1, s1 := rusage()
	res.SenderUserSecs, res.SenderSysSecs = u1-u0, s1-s0
	res.CPUPerWriteUS = (res.SenderUserSecs + res.SenderSysSecs) / float64(res.Writes) * 1e6
	w := bufio.NewWriter(os.Stdout)
	if err := json.NewEncoder(w).Encode(res); err != nil {
		return err
	}
	return w.Flush()
}

func (f *floorResult) print(w io.Writer) {
	fmt.Fprintf(w, "writefloor: %d writes of %d bytes to %d sockets in %d groups at %.0f events/s over %.1fs (%.0f writes/s), %d bytes read back\n",
		f.Writes, f.FrameBytes, f.Sockets, f.Groups, f.Rate, f.SenderWallSecs, float64(f.Writes)/f.SenderWallSecs, f.Received)
	fmt.Fprintf(w, "sending process CPU: user %.2fs + system %.2fs = %.2f µs per write (the least a server can spend per delivery here)\n",
		f.SenderUserSecs, f.SenderSysSecs, f.CPUPerWriteUS)
}
