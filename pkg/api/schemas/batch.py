"""batch/v1: Job and CronJob."""

BATCH = """
package batch/v1

Job kind: Runs pods until a number of them complete successfully.
  spec JobSpec  Desired behaviour of the Job.
  status JobStatus  Most recently observed status. Read-only.

JobSpec: Desired behaviour of a Job.
  activeDeadlineSeconds int64  Seconds the Job may be active, counted from its start, before it is failed.
  backoffLimit int32  Retries before the Job is marked failed. Defaults to 6.
  backoffLimitPerIndex int32  Retries per index of an Indexed Job.
  completionMode string{Indexed,NonIndexed}  NonIndexed: any completions count; Indexed: each index 0..completions-1 must complete once. Defaults to NonIndexed.
  completions int32  Successful pods needed; any one success finishes the Job when unset.
  managedBy string  Controller that manages the Job; the built-in one when unset.
  manualSelector boolean  Use the given selector instead of generating one.
  maxFailedIndexes int32  Failed indexes tolerated before the whole Job fails.
  parallelism int32  Most pods running at once. Defaults to 1.
  podFailurePolicy PodFailurePolicy  How pod failures count against the backoff limit.
  podReplacementPolicy string{Failed,TerminatingOrFailed}  When a replacement pod is created.
  selector LabelSelector  Labels of the pods counted; generated unless manualSelector is set.
  successPolicy SuccessPolicy  When the Job may be declared succeeded early.
  suspend boolean  Suspend the Job: no pods are created and running ones are terminated.
  template* core/v1.PodTemplateSpec  Pods the Job runs; restartPolicy must be Never or OnFailure.
  ttlSecondsAfterFinished int32  Seconds after completion or failure before the Job is deleted.

PodFailurePolicy: Rules applied to failed pods, in order.
  rules* []PodFailurePolicyRule  The rules; the first that matches applies.

PodFailurePolicyRule: What to do when a failed pod matches.
  action* string{Count,FailIndex,FailJob,Ignore}  Action taken on a match.
  onExitCodes PodFailurePolicyOnExitCodesRequirement  Match on container exit codes.
  onPodConditions []PodFailurePolicyOnPodConditionsPattern  Match on pod conditions.

PodFailurePolicyOnExitCodesRequirement: A match on container exit codes.
  containerName string  Container whose exit code is checked; all containers when empty.
  operator* string{In,NotIn}  How the exit code relates to the values.
  values* []int32  Exit codes.

PodFailurePolicyOnPodConditionsPattern: A match on a pod condition.
  status string{False,True,Unknown}  Required status. Defaults to True.
  type* string  Pod condition type.

SuccessPolicy: Rules that declare a Job succeeded; any matching rule suffices.
  rules* []SuccessPolicyRule  The rules.

SuccessPolicyRule: A success criterion of an Indexed Job.
  succeededCount int32  Succeeded indexes needed (within succeededIndexes when given).
  succeededIndexes string  Indexes that must succeed, as a list of intervals (e.g. 0-3,7).

JobStatus: Observed state of a Job.
  active int32  Pods still running (or pending).
  completedIndexes string  Completed indexes of an Indexed Job, as intervals.
  completionTime Time  When the Job completed.
  conditions []JobCondition  Latest observations (Complete, Failed, Suspended, ...).
  failed int32  Pods that failed.
  failedIndexes string  Failed indexes, with backoffLimitPerIndex.
  ready int32  Active pods that are ready.
  startTime Time  When the Job controller started the Job.
  succeeded int32  Pods that succeeded.
  terminating int32  Pods being terminated.
  uncountedTerminatedPods UncountedTerminatedPods  Finished pods not yet counted in the status.

JobCondition: A condition of a Job.
  lastProbeTime Time  When the condition was last checked.
  lastTransitionTime Time  When the status last changed.
  message string  Human-readable details.
  reason string  CamelCase reason of the last transition.
  status* string{False,True,Unknown}  Status of the condition.
  type* string  Type of the condition.

UncountedTerminatedPods: UIDs of finished pods the controller has not counted yet.
  failed []string  UIDs of failed pods.
  succeeded []string  UIDs of succeeded pods.

CronJob kind: Creates Jobs on a schedule.
  spec CronJobSpec  Desired behaviour and schedule.
  status CronJobStatus  Current status. Read-only.

CronJobSpec: Schedule and Job template of a CronJob.
  concurrencyPolicy string{Allow,Forbid,Replace}  What to do when the previous Job is still running. Defaults to Allow.
  failedJobsHistoryLimit int32  Failed Jobs kept. Defaults to 1.
  jobTemplate* JobTemplateSpec  The Job created at each run.
  schedule* string  Schedule in cron format (minute hour day-of-month month day-of-week) or a macro like @hourly.
  startingDeadlineSeconds int64  Seconds after a missed run time within which the Job may still start.
  successfulJobsHistoryLimit int32  Successful Jobs kept. Defaults to 3.
  suspend boolean  Skip future runs while true; running Jobs are left alone.
  timeZone string  Time zone of the schedule (an IANA name); the controller's when unset.

JobTemplateSpec: The Jobs a CronJob creates.
  metadata ObjectMeta  Metadata given to the Jobs.
  spec JobSpec  Spec of the Jobs.

CronJobStatus: Current state of a CronJob.
  active []ObjectReference  Jobs currently running.
  lastScheduleTime Time  When a Job was last scheduled.
  lastSuccessfulTime Time  When a Job last completed successfully.
"""

SOURCES = [BATCH]
