package deploy

import (
	"errors"
	"fmt"
	"strings"
)

// The dashboard test needs the metric names of each Grafana expression, not
// a full PromQL parser: this lexer skips strings, label matchers, range
// selectors, numbers and Grafana variables, and takes every identifier that
// is not a function, a keyword or a grouping label as a metric name.

// selector is one vector selector of an expression: the metric name and the
// raw text between its braces ("" when it has none).
type selector struct {
	name     string
	matchers string
	braced   bool
}

// exprInfo is what the dashboard test checks about one expression.
type exprInfo struct {
	selectors []selector
	groupings [][]string // label lists of by/without/on/ignoring/group_* clauses
}

// Lexer failures; each names the construct that did not close.
var (
	errUnclosedString  = errors.New("promql: unterminated string")
	errUnclosedBrace   = errors.New("promql: unterminated label matcher {")
	errUnclosedBracket = errors.New("promql: unterminated range [")
	errUnclosedParen   = errors.New("promql: unterminated grouping (")
	errStrayClose      = errors.New("promql: unbalanced closing bracket")
)

// groupingWords take a parenthesised label list, not an expression.
var groupingWords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// keywords are identifiers that are never metric names when not followed
// by "(".
var keywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true,
	"inf": true, "nan": true, "Inf": true, "NaN": true,
}

func isIdentStart(c byte) bool {
	return c == '_' || c == ':' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

func isIdentChar(c byte) bool { return isIdentStart(c) || (c >= '0' && c <= '9') }

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// skipString returns the index just past the string literal starting at i.
func skipString(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && q != '`':
			j++
		case s[j] == q:
			return j + 1, nil
		}
	}
	return 0, errUnclosedString
}

// skipUntil returns the index just past the first close outside strings,
// starting after the opener at i.
func skipUntil(s string, i int, close byte, unclosed error) (int, error) {
	for j := i + 1; j < len(s); {
		switch c := s[j]; {
		case c == '"' || c == '\'' || c == '`':
			k, err := skipString(s, j)
			if err != nil {
				return 0, err
			}
			j = k
		case c == close:
			return j + 1, nil
		default:
			j++
		}
	}
	return 0, unclosed
}

// startsGrouping reports whether s[k:] opens a "by (" or "without (" clause,
// which makes the word before it an aggregation operator.
func startsGrouping(s string, k int) bool {
	for _, w := range []string{"by", "without"} {
		if strings.HasPrefix(s[k:], w) {
			e := k + len(w)
			if e < len(s) && isIdentChar(s[e]) {
				continue
			}
			if e = skipSpace(s, e); e < len(s) && s[e] == '(' {
				return true
			}
		}
	}
	return false
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

// parseExpr lexes a PromQL/MetricsQL expression with Grafana variables.
func parseExpr(s string) (exprInfo, error) {
	var info exprInfo
	depth := 0
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',' || c == '+' || c == '-' ||
			c == '*' || c == '/' || c == '%' || c == '^' || c == '=' || c == '!' || c == '<' || c == '>':
			i++
		case c == '(':
			depth++
			i++
		case c == ')':
			if depth--; depth < 0 {
				return info, errStrayClose
			}
			i++
		case c == ']' || c == '}':
			return info, errStrayClose
		case c == '"' || c == '\'' || c == '`':
			j, err := skipString(s, i)
			if err != nil {
				return info, err
			}
			i = j
		case c == '[' && strings.HasPrefix(s[i:], "[["):
			// Grafana's deprecated [[variable]] syntax.
			j := strings.Index(s[i:], "]]")
			if j < 0 {
				return info, errUnclosedBracket
			}
			i += j + 2
		case c == '[':
			j, err := skipUntil(s, i, ']', errUnclosedBracket)
			if err != nil {
				return info, err
			}
			i = j
		case c == '{':
			// A selector with no name ({__name__="x"}) names nothing we check.
			j, err := skipUntil(s, i, '}', errUnclosedBrace)
			if err != nil {
				return info, err
			}
			i = j
		case c == '$':
			i++
			if i < len(s) && s[i] == '{' {
				j, err := skipUntil(s, i, '}', errUnclosedBrace)
				if err != nil {
					return info, err
				}
				i = j
			}
			for i < len(s) && isIdentChar(s[i]) {
				i++
			}
		case isDigit(c) || (c == '.' && i+1 < len(s) && isDigit(s[i+1])):
			// Numbers and durations: 0.99, 1e-3, 5m, 0x1f.
			for i++; i < len(s); i++ {
				d := s[i]
				if (d == '+' || d == '-') && (s[i-1] == 'e' || s[i-1] == 'E') {
					continue
				}
				if !isIdentChar(d) && d != '.' {
					break
				}
			}
		case isIdentStart(c):
			j := i
			for j < len(s) && isIdentChar(s[j]) {
				j++
			}
			word := s[i:j]
			k := skipSpace(s, j)
			switch {
			case groupingWords[word] && k < len(s) && s[k] == '(':
				end, err := skipUntil(s, k, ')', errUnclosedParen)
				if err != nil {
					return info, err
				}
				var labels []string
				for _, l := range strings.Split(s[k+1:end-1], ",") {
					if l = strings.TrimSpace(l); l != "" {
						labels = append(labels, l)
					}
				}
				info.groupings = append(info.groupings, labels)
				i = end
			case k < len(s) && s[k] == '(', keywords[word], startsGrouping(s, k):
				i = j // a function call, an operator keyword, or "sum by (...)"'s sum
			default:
				sel := selector{name: word}
				if k < len(s) && s[k] == '{' {
					end, err := skipUntil(s, k, '}', errUnclosedBrace)
					if err != nil {
						return info, err
					}
					sel.matchers, sel.braced = s[k+1:end-1], true
					j = end
				}
				info.selectors = append(info.selectors, sel)
				i = j
			}
		default:
			return info, fmt.Errorf("promql: unexpected character %q at %d", c, i)
		}
	}
	if depth != 0 {
		return info, errUnclosedParen
	}
	return info, nil
}
