package events_test

import (
	"testing"

	"github.com/parley-chat/parley/internal/events"
	"github.com/parley-chat/parley/internal/events/brokertest"
)

func TestMemoryBrokerConformance(t *testing.T) {
	brokertest.Run(t, func(t *testing.T) (events.Broker, events.Broker, func(*testing.T)) {
		b := events.NewMemoryBroker()
		return b, b, func(*testing.T) {}
	})
}
