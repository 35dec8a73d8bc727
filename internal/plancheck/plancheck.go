// Package plancheck reads query plans — PostgreSQL's EXPLAIN (FORMAT JSON)
// and SQLite's EXPLAIN QUERY PLAN — and finds the steps that read a whole
// table: a sequential scan, or an index walked from end to end without a
// condition on it. Tests use it to prove that the hot queries use indexes.
package plancheck

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Node is one node of a PostgreSQL plan.
type Node struct {
	NodeType    string  `json:"Node Type"`
	Relation    string  `json:"Relation Name"`
	Alias       string  `json:"Alias"`
	Index       string  `json:"Index Name"`
	IndexCond   string  `json:"Index Cond"`
	RecheckCond string  `json:"Recheck Cond"`
	Filter      string  `json:"Filter"`
	ScanDir     string  `json:"Scan Direction"`
	SubplanName string  `json:"Subplan Name"`
	PlanRows    float64 `json:"Plan Rows"`
	TotalCost   float64 `json:"Total Cost"`
	Plans       []*Node `json:"Plans"`
}

// ParsePostgres parses the output of EXPLAIN (FORMAT JSON): a one-element
// array holding {"Plan": {...}}.
func ParsePostgres(b []byte) (*Node, error) {
	var out []struct {
		Plan *Node `json:"Plan"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("plancheck: parse plan: %w", err)
	}
	if len(out) != 1 || out[0].Plan == nil {
		return nil, fmt.Errorf("plancheck: want one plan, got %d in %.200s", len(out), b)
	}
	return out[0].Plan, nil
}

// Walk calls fn for n and every node below it, parents first.
func (n *Node) Walk(fn func(*Node)) {
	if n == nil {
		return
	}
	fn(n)
	for _, c := range n.Plans {
		c.Walk(fn)
	}
}

// isIndexScan reports whether the node reads through an index.
func (n *Node) isIndexScan() bool {
	switch n.NodeType {
	case "Index Scan", "Index Only Scan", "Bitmap Index Scan":
		return true
	}
	return false
}

// Problem is a plan step that reads a whole table.
type Problem struct {
	Table string
	Kind  string // "seq scan" or "full index scan"
	Step  string // the step, as Summary writes it
}

func (p Problem) String() string { return fmt.Sprintf("%s of %s: %s", p.Kind, p.Table, p.Step) }

// PostgresProblems returns the steps of a plan that read all of one of the
// tables: sequential scans of them, and index scans with no index condition
// (an index walked from one end: the whole table, unless a LIMIT stops it
// early).
func PostgresProblems(root *Node, tables ...string) (seq, fullIndex []Problem) {
	root.Walk(func(n *Node) {
		if !slices.Contains(tables, n.Relation) {
			return
		}
		switch {
		case n.NodeType == "Seq Scan":
			seq = append(seq, Problem{Table: n.Relation, Kind: "seq scan", Step: n.step()})
		case n.isIndexScan() && n.IndexCond == "":
			fullIndex = append(fullIndex, Problem{Table: n.Relation, Kind: "full index scan", Step: n.step()})
		}
	})
	return seq, fullIndex
}

// step describes one node: its type, the relation and index it reads, and
// its conditions.
func (n *Node) step() string {
	var b strings.Builder
	b.WriteString(n.NodeType)
	if n.ScanDir == "Backward" && !strings.HasSuffix(n.NodeType, "Backward") {
		b.WriteString(" Backward")
	}
	if n.Index != "" {
		b.WriteString(" using " + n.Index)
	}
	if n.Relation != "" {
		b.WriteString(" on " + n.Relation)
		if n.Alias != "" && n.Alias != n.Relation {
			b.WriteString(" " + n.Alias)
		}
	}
	for _, c := range []struct{ name, v string }{{"cond", n.IndexCond}, {"recheck", n.RecheckCond}, {"filter", n.Filter}} {
		if c.v != "" {
			fmt.Fprintf(&b, " [%s %s]", c.name, shorten(c.v, 120))
		}
	}
	return b.String()
}

// Summary writes a plan as one line: every node, children in parentheses.
// Scans name their relation and index; conditions are left out, so the line
// says which index each table is read through.
func Summary(n *Node) string {
	var b strings.Builder
	var walk func(n *Node)
	walk = func(n *Node) {
		b.WriteString(n.NodeType)
		if n.NodeType == "Index Scan" || n.NodeType == "Index Only Scan" {
			if n.ScanDir == "Backward" {
				b.WriteString(" Backward")
			}
		}
		if n.Index != "" {
			b.WriteString(" " + n.Index)
		}
		if n.Relation != "" {
			b.WriteString(" on " + n.Relation)
		}
		if n.Relation != "" && n.isIndexScan() && n.IndexCond == "" {
			b.WriteString(" (no index cond)")
		}
		if len(n.Plans) == 0 {
			return
		}
		b.WriteString(" (")
		for i, c := range n.Plans {
			if i > 0 {
				b.WriteString(", ")
			}
			walk(c)
		}
		b.WriteString(")")
	}
	walk(n)
	return b.String()
}

// Indexes returns the indexes a plan reads, in plan order, each once.
func Indexes(n *Node) []string {
	var out []string
	n.Walk(func(n *Node) {
		if n.Index != "" && !slices.Contains(out, n.Index) {
			out = append(out, n.Index)
		}
	})
	return out
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// ---------------------------------------------------------------------------
// SQLite

// SQLiteProblems returns the steps of an EXPLAIN QUERY PLAN (its detail
// column, one string per row) that read all of one of the tables: "SCAN t"
// (a full table scan), "SCAN t USING [COVERING] INDEX i" (a full index
// scan) and automatic indexes, which SQLite builds by reading the whole
// table. query is the statement explained: SQLite names a table by its
// alias when it has one, and the aliases are read from the query.
func SQLiteProblems(query string, details []string, tables ...string) (seq, fullIndex []Problem) {
	aliases := SQLAliases(query)
	for _, d := range details {
		verb, rest, _ := strings.Cut(d, " ")
		if verb != "SCAN" && verb != "SEARCH" {
			continue
		}
		name, how, _ := strings.Cut(rest, " ")
		table := name
		if t, ok := aliases[strings.ToLower(name)]; ok {
			table = t
		}
		if !slices.Contains(tables, table) {
			continue
		}
		switch {
		case strings.Contains(how, "AUTOMATIC"):
			seq = append(seq, Problem{Table: table, Kind: "seq scan (automatic index)", Step: d})
		case verb == "SCAN" && !strings.Contains(how, "INDEX") && !strings.Contains(how, "PRIMARY KEY"):
			seq = append(seq, Problem{Table: table, Kind: "seq scan", Step: d})
		case verb == "SCAN":
			fullIndex = append(fullIndex, Problem{Table: table, Kind: "full index scan", Step: d})
		}
	}
	return seq, fullIndex
}

// aliasRE matches a table reference: FROM/JOIN/UPDATE/INTO, the table
// (quoted, backquoted or bare), and an optional alias (with or without AS).
var aliasRE = regexp.MustCompile(`(?i)\b(?:from|join|update|into)\s+["` + "`" + `]?([a-z_][a-z0-9_]*)["` + "`" + `]?` +
	`(?:\s+(?:as\s+)?["` + "`" + `]?([a-z_][a-z0-9_]*)["` + "`" + `]?)?`)

// notAlias are the words that may follow a table reference without being
// its alias.
var notAlias = map[string]bool{
	"where": true, "join": true, "inner": true, "left": true, "right": true, "full": true, "cross": true,
	"natural": true, "on": true, "using": true, "order": true, "group": true, "having": true, "limit": true,
	"offset": true, "set": true, "values": true, "union": true, "except": true, "intersect": true,
	"returning": true, "for": true, "window": true, "default": true, "select": true, "outer": true,
}

// SQLAliases maps the tables of a query and their aliases (lower-case) to
// table names.
func SQLAliases(query string) map[string]string {
	out := map[string]string{}
	for _, m := range aliasRE.FindAllStringSubmatch(query, -1) {
		table := strings.ToLower(m[1])
		out[table] = table
		if a := strings.ToLower(m[2]); a != "" && !notAlias[a] {
			out[a] = table
		}
	}
	return out
}
