package memstore

import (
	"testing"

	"github.com/mound-build/mound/cas/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store { return New() }, 300<<10)
}
