# Constants the variable validations share (variables.tf).

locals {
  # Cloud Functions' request timeouts: event-driven functions stop at 540 s,
  # HTTP ones at 3600 s. RUN_TIME_BUDGET and HTTP_RUN_TIME_BUDGET must end a
  # run before them.
  event_timeout_seconds = 540
  http_timeout_seconds  = 3600

  # A Go duration as time.ParseDuration reads it (no sign: budgets are
  # positive), and one number+unit part of it.
  go_duration_pattern = "^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$"
  go_duration_part    = "([0-9]+(?:\\.[0-9]+)?)(ns|us|µs|ms|s|m|h)"
  duration_unit_seconds = {
    ns   = 0.000000001
    us   = 0.000001
    "µs" = 0.000001
    ms   = 0.001
    s    = 1
    m    = 60
    h    = 3600
  }

  # Terraform has no time zone function: time_zones.txt lists the names of
  # the IANA tz database as Go ships it (lib/time/zoneinfo.zip), one a line,
  # written by `go run ./scripts/tfcheck -write-time-zones` and checked by
  # its tests.
  iana_time_zones = toset(split("\n", trimspace(file("${path.module}/time_zones.txt"))))
}
