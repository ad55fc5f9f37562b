// Package testenv starts the real servers esmd's integration tests run
// against, on 127.0.0.1 only, once per test package, and stops them:
//
//   - FauxQS: fauxqs (npm), which serves SQS, SNS and S3 on one port;
//   - RIE: the AWS Lambda Runtime Interface Emulator running
//     internal/testfn, built in the test setup;
//   - Kafka: kfake, in process;
//   - PostgreSQL: Debian's PostgreSQL 15 as a plain process with its own
//     data directory (PostgreSQL, PostgreSQLDatabase).
//
// Use it from TestMain:
//
//	func TestMain(m *testing.M) { testenv.Main(m) }
//
// and call testenv.FauxQS(t), testenv.RIE(t) or testenv.Kafka(t) in tests.
// Main stops every server and kills every process the package started.
//
// Binaries and npm packages come from the cache directory $ESMD_TEST_CACHE
// (default <repo>/.cache/testenv), filled by scripts/install-test-deps.sh.
// A server that cannot be started FAILS the test with a message that says
// what to run; integration tests are skipped only when
// ESMD_SKIP_INTEGRATION=1.
package testenv
