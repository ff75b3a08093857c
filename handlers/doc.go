// Package handlers is the home of txoutbox's built-in handlers, one package
// each: handlers/webhook (signed HTTP webhooks), handlers/email (SMTP) and
// handlers/pdf (rendered documents in a blob store). Each registers on a
// relay.Handlers registry in one line and passes the conformance suite in
// handlers/handlertest.
//
// Handler packages import relay and outbox, never each other.
package handlers
