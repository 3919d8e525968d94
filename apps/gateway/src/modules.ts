import { confidenceModule } from '@caliber/confidence';
import { fineTuningModule } from '@caliber/fine-tuning';
import { headCalibrationModule } from '@caliber/head-calibration';
import { modelCatalogModule } from '@caliber/model-catalog';
import { modelSelectionModule } from '@caliber/model-selection';
import { notificationsModule } from '@caliber/notifications';
import type { DomainModule } from '@caliber/platform';
import { responseQualityModule } from '@caliber/response-quality';

/** Every domain the gateway serves, configured from the environment. */
export function gatewayModules(): DomainModule[] {
  return [headCalibrationModule(), modelCatalogModule(), responseQualityModule(), fineTuningModule(), confidenceModule(), modelSelectionModule(), notificationsModule()];
}
