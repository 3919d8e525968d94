/**
 * Caliber's operations offered to agents: each tool is one HTTP route of the gateway, called with
 * the caller's own key, so validation, auth, tenancy and error codes are the API's own.
 */
export interface ToolSpec {
  name: string;
  title: string;
  /** `METHOD /path` as the OpenAPI document has it (`{param}` placeholders). */
  route: string;
  /** A tenant route: tenant keys get this tool (the admin key too, naming the tenant). */
  tenant?: boolean;
  /**
   * A body that is not one object (`{…}` or `{"items":[…]}`): the tool takes the single-item form
   * under this argument.
   */
  bodyArgument?: string;
  /** What the agent should know beyond the route's own summary. */
  note?: string;
  /** For a route that answers 202 with a queued job: the call that follows it (tools/call params). */
  poll?: (accepted: Record<string, unknown>) => { name: string; arguments: Record<string, unknown> };
}

const jobStatus = (a: Record<string, unknown>) => ({ name: 'job_status', arguments: { queue: a.queue, id: a.jobId } });

const RQ = '/api/analytics/response-quality';
const MI = '/api/analytics/model-improvement';
const FT = `${MI}/fine-tuning`;
const POLL = 'Returns at once with the job id; poll it with job_status.';

export const TOOL_SPECS: ToolSpec[] = [
  { name: 'calibration_run', title: 'Start a calibration run', route: 'POST /admin/calibration/run', poll: jobStatus, note: `${POLL} Its result lists the runs per head and whether each was stable.` },
  { name: 'job_status', title: 'A job and its result', route: 'GET /admin/jobs/{queue}/{id}', note: 'state is waiting, active, delayed, completed or failed; result holds what a completed job returned.' },
  { name: 'calibration_history', title: 'Calibration history of a head', route: 'GET /admin/calibration/history' },
  { name: 'retag_status', title: 'Re-tagging progress', route: 'GET /admin/calibration/retag-status' },
  { name: 'retag_start', title: 'Re-tag the whole library', route: 'POST /admin/calibration/retag-all', note: 'Queues the backlog and returns; follow it with retag_status.' },
  { name: 'best_model', title: 'Best model for a provider and metric', route: 'GET /best-model' },
  { name: 'model_mapping_coverage', title: 'Model mapping coverage', route: 'GET /admin/models/coverage' },
  { name: 'model_mapping_set', title: 'Map one model by hand', route: 'PUT /admin/models/mappings/{name}' },
  { name: 'model_config', title: 'Chosen model for a language and project size', route: 'GET /model-config' },
  { name: 'record_feedback', title: 'Record feedback on a response', route: `POST ${RQ}/feedback`, bodyArgument: 'feedback' },
  { name: 'error_patterns', title: 'Error patterns of a model', route: `GET ${MI}/error-patterns` },
  { name: 'improvement_suggestions', title: 'Improvement suggestions for a model', route: `POST ${MI}/improvement-suggestions` },
  { name: 'analyze_errors', title: 'Run the error analysis now', route: `POST ${MI}/analyze`, poll: jobStatus, note: POLL },
  { name: 'fine_tuning_check', title: 'Should a model be fine-tuned?', route: `POST ${FT}/check` },
  { name: 'fine_tuning_create', title: 'Create a fine-tuning job', route: `POST ${FT}/jobs`, note: 'Creates the job (status pending); start it with fine_tuning_start.' },
  { name: 'fine_tuning_start', title: 'Start a fine-tuning job', route: `POST ${FT}/jobs/{job_id}/start`, poll: (a) => ({ name: 'fine_tuning_status', arguments: { job_id: (a.job as { id?: unknown } | undefined)?.id } }), note: 'Returns once the start is queued; follow it with fine_tuning_status.' },
  { name: 'fine_tuning_cancel', title: 'Cancel a fine-tuning job', route: `POST ${FT}/jobs/{job_id}/cancel` },
  { name: 'fine_tuning_status', title: 'A fine-tuning job', route: `GET ${FT}/jobs/{job_id}` },
  { name: 'confidence_calibration', title: 'Confidence calibration of a model', route: 'GET /confidence/calibration', tenant: true },
  { name: 'confidence_calibrate', title: 'Fit a confidence temperature', route: 'POST /confidence/calibrate', tenant: true, poll: (a) => ({ name: 'confidence_job_status', arguments: { id: a.jobId } }), note: 'Returns at once with the job id; poll it with confidence_job_status.' },
  { name: 'confidence_job_status', title: 'A confidence calibration job', route: 'GET /confidence/jobs/{id}', tenant: true },
];

/** Query parameters that make a route wait for its job: a tool never blocks, it returns the job id. */
export const WAIT_PARAMETERS = new Set(['wait', 'timeout']);
