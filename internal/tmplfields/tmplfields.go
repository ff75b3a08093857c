// Package tmplfields lists the fields of its data that a text/template
// names, so that a handler can refuse a template with a misspelt field
// (such as {{.Topik}}) when it is configured, instead of failing every
// entry it renders.
package tmplfields

import "text/template/parse"

// Used returns, in order of first use and without repeats, the names of the
// data's fields that the template rooted at root names: the first field of
// each chain on the top-level dot (outside range and with, where the dot is
// something else) and on $ anywhere.
func Used(root *parse.ListNode) []string {
	var used []string
	seen := map[string]bool{}
	add := func(ident []string) {
		if len(ident) > 0 && !seen[ident[0]] {
			seen[ident[0]] = true
			used = append(used, ident[0])
		}
	}
	var walk func(n parse.Node, top bool)
	walkPipe := func(p *parse.PipeNode, top bool) {
		if p == nil {
			return
		}
		for _, cmd := range p.Cmds {
			for _, arg := range cmd.Args {
				walk(arg, top)
			}
		}
	}
	walk = func(n parse.Node, top bool) {
		switch n := n.(type) {
		case *parse.ListNode:
			if n == nil {
				return
			}
			for _, c := range n.Nodes {
				walk(c, top)
			}
		case *parse.ActionNode:
			walkPipe(n.Pipe, top)
		case *parse.PipeNode:
			walkPipe(n, top)
		case *parse.FieldNode:
			if top {
				add(n.Ident)
			}
		case *parse.VariableNode:
			if len(n.Ident) > 1 && n.Ident[0] == "$" {
				add(n.Ident[1:])
			}
		case *parse.ChainNode:
			walk(n.Node, top)
		case *parse.IfNode:
			walkPipe(n.Pipe, top)
			walk(n.List, top)
			walk(n.ElseList, top)
		case *parse.RangeNode:
			walkPipe(n.Pipe, top)
			walk(n.List, false)
			walk(n.ElseList, top)
		case *parse.WithNode:
			walkPipe(n.Pipe, top)
			walk(n.List, false)
			walk(n.ElseList, top)
		case *parse.TemplateNode:
			walkPipe(n.Pipe, top)
		}
	}
	walk(root, true)
	return used
}
