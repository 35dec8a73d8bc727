package database

import (
	"context"
	"database/sql/driver"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Counter counts the SQL statements this process sends, as the database
// server itself would log them (PostgreSQL's log_statement = all): every
// query and exec, and BEGIN, COMMIT and ROLLBACK. Pings are not counted.
type Counter struct {
	n      atomic.Int64
	record atomic.Pointer[func(query string, args []driver.NamedValue)]
	timer  atomic.Pointer[func(time.Duration)]
}

// Load returns the number of statements sent so far.
func (c *Counter) Load() int64 { return c.n.Load() }

// Record calls fn with every query and exec sent from now on (nil stops);
// tests use it to EXPLAIN exactly what the server runs.
func (c *Counter) Record(fn func(query string, args []driver.NamedValue)) {
	if fn == nil {
		c.record.Store(nil)
		return
	}
	c.record.Store(&fn)
}

// Time calls fn with the duration of every query and exec sent from now on
// (for queries, until the driver returns the rows; nil stops).
func (c *Counter) Time(fn func(time.Duration)) {
	if fn == nil {
		c.timer.Store(nil)
		return
	}
	c.timer.Store(&fn)
}

func (c *Counter) timed(start time.Time) {
	if fn := c.timer.Load(); fn != nil {
		(*fn)(time.Since(start))
	}
}

func (c *Counter) add() { c.n.Add(1) }

func (c *Counter) addQuery(query string, args []driver.NamedValue) {
	c.n.Add(1)
	if fn := c.record.Load(); fn != nil {
		(*fn)(query, args)
	}
}

// countingConnector wraps a driver's connector so that every statement on
// every pooled connection is counted, whichever code path sent it (ent,
// raw SQL, migrations).
type countingConnector struct {
	driver.Connector
	c *Counter
	// writers, when not nil, admits one transaction at a time (SQLite).
	writers chan struct{}
	// cache keeps each connection's prepared statements (SQLite).
	cache bool
}

func (cc countingConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := cc.Connector.Connect(ctx)
	if err != nil {
		return nil, err
	}
	cn := &countingConn{Conn: conn, c: cc.c, writers: cc.writers}
	if cc.cache {
		cn.stmts = map[string]*cachedStmt{}
	}
	return cn, nil
}

// dsnConnector is the connector of a driver that has none of its own.
type dsnConnector struct {
	dsn string
	drv driver.Driver
}

func (d dsnConnector) Connect(context.Context) (driver.Conn, error) { return d.drv.Open(d.dsn) }
func (d dsnConnector) Driver() driver.Driver                        { return d.drv }

func connector(drv driver.Driver, dsn string) (driver.Connector, error) {
	if dc, ok := drv.(driver.DriverContext); ok {
		return dc.OpenConnector(dsn)
	}
	return dsnConnector{dsn: dsn, drv: drv}, nil
}

// countingConn forwards every optional interface database/sql looks for, so
// wrapping changes nothing but the count.
type countingConn struct {
	driver.Conn
	c       *Counter
	writers chan struct{}
	// stmts are this connection's prepared statements by query text (nil:
	// none kept). database/sql uses a connection from one goroutine at a
	// time, so the map needs no lock.
	stmts map[string]*cachedStmt
}

// maxCachedStmts bounds a connection's prepared statements: queries with
// an IN list differ by its length, so their texts are many but bounded.
const maxCachedStmts = 512

// cachedStmt is a prepared statement kept by its connection; busy while
// rows it returned are open (a second query of the same text meanwhile,
// on the same connection inside a transaction, prepares its own).
type cachedStmt struct {
	st   driver.Stmt
	busy bool
}

// cached returns the connection's prepared statement for query, preparing
// it on first use; nil when statements are not kept, the query holds
// several statements, or its statement is in use. modernc's SQLite driver
// prepares a query anew on every call otherwise, which was 7-9% of the CPU
// of a conversation list or a send.
func (c *countingConn) cached(ctx context.Context, query string) *cachedStmt {
	if c.stmts == nil || strings.IndexByte(query, ';') >= 0 {
		return nil
	}
	if cs := c.stmts[query]; cs != nil {
		if cs.busy {
			return nil
		}
		return cs
	}
	p, ok := c.Conn.(driver.ConnPrepareContext)
	if !ok {
		return nil
	}
	st, err := p.PrepareContext(ctx, query)
	if err != nil {
		return nil // the unprepared path reports it
	}
	if len(c.stmts) >= maxCachedStmts {
		c.closeStmts()
	}
	cs := &cachedStmt{st: st}
	c.stmts[query] = cs
	return cs
}

func (c *countingConn) closeStmts() {
	for q, cs := range c.stmts {
		if !cs.busy {
			_ = cs.st.Close()
		}
		delete(c.stmts, q)
	}
}

// Close closes the connection's prepared statements, then the connection.
func (c *countingConn) Close() error {
	c.closeStmts()
	return c.Conn.Close()
}

// releasingRows frees its statement for reuse when closed.
type releasingRows struct {
	driver.Rows
	cs *cachedStmt
}

func (r *releasingRows) Close() error {
	r.cs.busy = false
	return r.Rows.Close()
}

var (
	_ driver.ConnBeginTx        = (*countingConn)(nil)
	_ driver.ExecerContext      = (*countingConn)(nil)
	_ driver.QueryerContext     = (*countingConn)(nil)
	_ driver.ConnPrepareContext = (*countingConn)(nil)
	_ driver.Pinger             = (*countingConn)(nil)
	_ driver.NamedValueChecker  = (*countingConn)(nil)
	_ driver.SessionResetter    = (*countingConn)(nil)
	_ driver.Validator          = (*countingConn)(nil)
)

// BeginTx begins a transaction. On SQLite, whose every transaction takes
// the database's one write lock at BEGIN (_txlock=immediate), transactions
// of this process first queue here, in Go, for their turn: waiting in
// SQLite's busy handler instead means sleeping 1, 2, 5, 10… ms between
// attempts, so under contention the lock sat idle between writers and
// latencies reached hundreds of ms. The busy timeout still covers other
// processes on the same file.
func (c *countingConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	var release func()
	if c.writers != nil {
		select {
		case c.writers <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		var once sync.Once
		release = func() { once.Do(func() { <-c.writers }) }
	}
	var (
		tx  driver.Tx
		err error
	)
	if b, ok := c.Conn.(driver.ConnBeginTx); ok {
		tx, err = b.BeginTx(ctx, opts)
	} else {
		//lint:ignore SA1019 the fallback database/sql itself uses
		tx, err = c.Conn.Begin()
	}
	if err != nil {
		if release != nil {
			release()
		}
		return nil, err
	}
	c.c.add()
	return countingTx{Tx: tx, c: c.c, release: release}, nil
}

func (c *countingConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	e, ok := c.Conn.(driver.ExecerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	start := time.Now()
	if cs := c.cached(ctx, query); cs != nil {
		if se, ok := cs.st.(driver.StmtExecContext); ok {
			res, err := se.ExecContext(ctx, args)
			c.c.timed(start)
			c.c.addQuery(query, args)
			return res, err
		}
	}
	res, err := e.ExecContext(ctx, query, args)
	if err != driver.ErrSkip {
		c.c.timed(start)
		c.c.addQuery(query, args)
	}
	return res, err
}

func (c *countingConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	q, ok := c.Conn.(driver.QueryerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	start := time.Now()
	if cs := c.cached(ctx, query); cs != nil {
		if sq, ok := cs.st.(driver.StmtQueryContext); ok {
			rows, err := sq.QueryContext(ctx, args)
			c.c.timed(start)
			c.c.addQuery(query, args)
			if err != nil {
				return nil, err
			}
			cs.busy = true
			return &releasingRows{Rows: rows, cs: cs}, nil
		}
	}
	rows, err := q.QueryContext(ctx, query, args)
	if err != driver.ErrSkip {
		c.c.timed(start)
		c.c.addQuery(query, args)
	}
	return rows, err
}

func (c *countingConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	var (
		st  driver.Stmt
		err error
	)
	if p, ok := c.Conn.(driver.ConnPrepareContext); ok {
		st, err = p.PrepareContext(ctx, query)
	} else {
		st, err = c.Conn.Prepare(query)
	}
	if err != nil {
		return nil, err
	}
	return &countingStmt{Stmt: st, c: c.c}, nil
}

func (c *countingConn) Ping(ctx context.Context) error {
	if p, ok := c.Conn.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (c *countingConn) CheckNamedValue(v *driver.NamedValue) error {
	if n, ok := c.Conn.(driver.NamedValueChecker); ok {
		return n.CheckNamedValue(v)
	}
	return driver.ErrSkip
}

func (c *countingConn) ResetSession(ctx context.Context) error {
	if r, ok := c.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *countingConn) IsValid() bool {
	if v, ok := c.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

type countingTx struct {
	driver.Tx
	c       *Counter
	release func() // nil: no write gate
}

func (t countingTx) Commit() error {
	t.c.add()
	err := t.Tx.Commit()
	t.done()
	return err
}

func (t countingTx) Rollback() error {
	t.c.add()
	err := t.Tx.Rollback()
	t.done()
	return err
}

func (t countingTx) done() {
	if t.release != nil {
		t.release()
	}
}

type countingStmt struct {
	driver.Stmt
	c *Counter
}

func (s *countingStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	s.c.add()
	defer s.c.timed(time.Now())
	if e, ok := s.Stmt.(driver.StmtExecContext); ok {
		return e.ExecContext(ctx, args)
	}
	vals := make([]driver.Value, len(args))
	for i, a := range args {
		vals[i] = a.Value
	}
	//lint:ignore SA1019 the fallback for drivers without context support
	return s.Stmt.Exec(vals)
}

func (s *countingStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	s.c.add()
	defer s.c.timed(time.Now())
	if q, ok := s.Stmt.(driver.StmtQueryContext); ok {
		return q.QueryContext(ctx, args)
	}
	vals := make([]driver.Value, len(args))
	for i, a := range args {
		vals[i] = a.Value
	}
	//lint:ignore SA1019 the fallback for drivers without context support
	return s.Stmt.Query(vals)
}

func (s *countingStmt) CheckNamedValue(v *driver.NamedValue) error {
	if n, ok := s.Stmt.(driver.NamedValueChecker); ok {
		return n.CheckNamedValue(v)
	}
	return driver.ErrSkip
}
