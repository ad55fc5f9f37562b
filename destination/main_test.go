package destination_test

import (
	"testing"

	"github.com/esmd/esmd/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }
