import { confidenceModule } from '@caliber/confidence';
import { modelSelectionModule } from '@caliber/model-selection';
import { notificationsModule } from '@caliber/notifications';
import { headCalibrationModule } from '@caliber/head-calibration';
import { modelCatalogModule } from '@caliber/model-catalog';
import { fineTuningModule } from '@caliber/fine-tuning';
import { responseQualityModule } from '@caliber/response-quality';
import { createPlatform, loadPlatformConfig, onShutdownSignal, runMain } from '@caliber/platform';
import { parseQueuesArg, startWorkerProcess } from './worker.ts';

runMain(async () => {
  const config = loadPlatformConfig();
  const queues = parseQueuesArg(process.argv.slice(2));
  const modules = [headCalibrationModule(), modelCatalogModule(), responseQualityModule(), fineTuningModule(), confidenceModule(), modelSelectionModule(), notificationsModule()];
  const platform = createPlatform(config, { name: `worker${queues ? `-${queues.join('+')}` : ''}` });
  const { running, schedulesRegistered } = startWorkerProcess(platform, modules, { queues });

  onShutdownSignal(platform.log, async () => {
    const { forced } = await running.close(config.SHUTDOWN_TIMEOUT_MS);
    platform.log.info({ forced }, 'workers stopped');
    await platform.close();
  });
  await schedulesRegistered;
});
